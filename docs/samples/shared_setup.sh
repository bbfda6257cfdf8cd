# A shared-mode paywall: people pay from their own wallet, after authorizing the app.
PAYWALL=$(paywalls --json create --name "Shared app" --mode shared --platform-fee-percent 10 | jq -r .id)
paywalls provider "$PAYWALL" --demo
paywalls pricing "$PAYWALL" --model demo/echo=1,2
KEY=$(paywalls --json keys create "$PAYWALL" | jq -r .key)
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/chat/completions" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -H "X-Paywall-User: sam" \
  -d '{"model": "demo/echo", "messages": [{"role": "user", "content": "Hi from shared mode"}]}'
# ... "To use Shared app, connect your wallet and authorize it here: http://127.0.0.1:8000/wallet/authorize/..."
