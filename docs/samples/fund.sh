# Credit alice with 1.00 on the demo paywall (an operator adjustment, recorded in her ledger).
paywalls adjust "$(jq -r .paywall_id .paywalls/local.json)" alice 1 --reason "first steps"
