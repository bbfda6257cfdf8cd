curl -sS --fail-with-body "$PAYWALLS_BASE_URL/chat/completions" \
  -H "Authorization: Bearer $PAYWALLS_API_KEY" \
  -H "Content-Type: application/json" \
  -H "X-Paywall-User: alice" \
  -d '{"model": "demo/echo", "messages": [{"role": "user", "content": "Hello, paywall!"}]}'
