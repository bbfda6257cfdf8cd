auth="Authorization: Bearer $PAYWALLS_API_KEY"

# The balance: micro-units (10^-6 of the currency) as an integer string, and formatted.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance?user=alice" -H "$auth"

# A stable link to the hosted top-up page, for a "Top up" button in your app.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance/topup?user=alice" -H "$auth"

# The ledger, newest first: every credit and charge, with tokens and the request id.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/ledger?user=alice&limit=5" -H "$auth"
