"""The proxy endpoints beyond chat (Responses, embeddings) and several providers per paywall."""
