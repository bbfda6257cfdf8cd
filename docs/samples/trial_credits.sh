# Trial credits: every new user of this paywall starts with 0.05 (once, on their first request).
PAYWALL=$(paywalls --json create --name "Trial app" --trial-credits 0.05 | jq -r .id)
paywalls provider "$PAYWALL" --demo
paywalls pricing "$PAYWALL" --model demo/echo=1,2
KEY=$(paywalls --json keys create "$PAYWALL" | jq -r .key)
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance?user=gina" -H "Authorization: Bearer $KEY"
# {"balance":"50000","balanceFormatted":"0.050000","currency":"usd"}
