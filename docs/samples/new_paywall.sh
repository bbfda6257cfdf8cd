# A paywall of your own on the local stack, served by the built-in demo provider.
PAYWALL=$(paywalls --json create --name "My app" --markup-percent 20 | jq -r .id)
paywalls provider "$PAYWALL" --demo                  # a real one: --kind openai --stdin (see Deploy)
paywalls pricing "$PAYWALL" --model demo/echo=0.15,0.60
KEY=$(paywalls --json keys create "$PAYWALL" --environment live | jq -r .key)  # shown once: keep it
paywalls adjust "$PAYWALL" erin 1                    # or let erin top up
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/chat/completions" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -H "X-Paywall-User: erin" \
  -d '{"model": "demo/echo", "messages": [{"role": "user", "content": "my own paywall"}]}'
