"""The operator console (`paywalls console`): a local web UI over the admin API."""
