# A test key (sk-paywalls-test-...) and a live key of one paywall never see each other's balances.
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance/deposit" \
  -H "Authorization: Bearer $PAYWALLS_TEST_API_KEY" -H "Content-Type: application/json" \
  -H "Idempotency-Key: test-deposit-1" -d '{"user": "tess", "amount": "5"}' > /dev/null
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance?user=tess" -H "Authorization: Bearer $PAYWALLS_TEST_API_KEY"
# {"balance":"5000000",...}: test money
curl -sS --fail-with-body "$PAYWALLS_BASE_URL/user/balance?user=tess" -H "Authorization: Bearer $PAYWALLS_API_KEY"
# {"balance":"0",...}: the live wallet of the same user is untouched
