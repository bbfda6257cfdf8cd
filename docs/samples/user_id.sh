ask='{"model": "demo/echo", "messages": [{"role": "user", "content": "who pays?"}]'

# 1. The body's `user` field (what the OpenAI SDKs send as `user=`): wins over everything else.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/chat/completions" \
  -H "Authorization: Bearer $PAYWALLS_API_KEY" -H "Content-Type: application/json" \
  -d "$ask, \"user\": \"alice\"}"

# 2. The X-Paywall-User header: for clients that cannot add body fields.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/chat/completions" \
  -H "Authorization: Bearer $PAYWALLS_API_KEY" -H "Content-Type: application/json" \
  -H "X-Paywall-User: alice" -d "$ask}"

# 3. The path: a base URL per user, for clients that only let you set the base URL.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/alice/chat/completions" \
  -H "Authorization: Bearer $PAYWALLS_API_KEY" -H "Content-Type: application/json" \
  -d "$ask}"

# 4. The user endpoints (balance, top-up link, ledger) also take ?user=.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance?user=alice" -H "Authorization: Bearer $PAYWALLS_API_KEY"
