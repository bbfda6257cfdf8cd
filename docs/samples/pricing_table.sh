PAYWALL=$(paywalls --json create --name "Priced app" | jq -r .id)
paywalls pricing "$PAYWALL" --model gpt-4o-mini=0.15,0.60 --model gpt-4o=2.50,10,0.001
paywalls pricing "$PAYWALL" --markup-percent 20                      # keeps the models
paywalls pricing "$PAYWALL" --remove gpt-4o                          # takes one off
paywalls pricing "$PAYWALL" --replace --model gpt-4o-mini=0.15,0.60  # the whole table at once
