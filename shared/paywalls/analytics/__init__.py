"""Analytics: roll-ups of the ledger maintained off the hot path, and the reports that read them."""
