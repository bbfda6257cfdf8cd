# Where your app sends its OpenAI requests, and the paywall key it sends (`make run` prints both
# and keeps them in .paywalls/local.json).
export PAYWALLS_BASE_URL="$(jq -r .base_url .paywalls/local.json)"
export PAYWALLS_API_KEY="$(jq -r .api_key .paywalls/local.json)"
export PAYWALLS_TEST_API_KEY="$(jq -r .test_api_key .paywalls/local.json)"
