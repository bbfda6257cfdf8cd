"""Money rules: wallets' ledger, paywall settings, top-ups, Stripe events, earnings, payouts."""
