"""The chat proxy: request rules, pricing, hold-then-settle, streams, providers."""
