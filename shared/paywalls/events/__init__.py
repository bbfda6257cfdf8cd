"""Outbound webhooks: event catalog, transactional outbox, subscriptions, signed deliveries, logs."""
