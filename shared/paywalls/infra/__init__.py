"""Adapters: DynamoDB, Secrets Manager, Stripe's API, SES, logs, metrics, settings, signing keys."""
