# Per-request pricing: nothing per token, 0.01 per request (PROMPT,COMPLETION,REQUEST).
PAYWALL=$(paywalls --json create --name "Flat fee app" | jq -r .id)
paywalls provider "$PAYWALL" --demo
paywalls pricing "$PAYWALL" --model demo/echo=0,0,0.01
KEY=$(paywalls --json keys create "$PAYWALL" | jq -r .key)
paywalls adjust "$PAYWALL" frank 1
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/chat/completions" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -H "X-Paywall-User: frank" \
  -d '{"model": "demo/echo", "messages": [{"role": "user", "content": "a flat fee"}]}' > /dev/null
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance?user=frank" -H "Authorization: Bearer $KEY"
# {"balance":"990000","balanceFormatted":"0.990000","currency":"usd"}
