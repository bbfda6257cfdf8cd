"""What one request costs, exactly as the proxy computes it (docs: Pricing and metering)."""

from decimal import ROUND_CEILING, Decimal

prompt_price, completion_price = Decimal("0.15"), Decimal("0.60")  # per 1M tokens
request_fee, markup_percent = Decimal("0.001"), Decimal("20")
prompt_tokens, completion_tokens = 1200, 350  # the provider's reported usage

# A price per 1M tokens times a token count is already in micro-units (10^-6 of the currency).
raw = (prompt_tokens * prompt_price + completion_tokens * completion_price + request_fee * 1_000_000) * (
    1 + markup_percent / 100
)
charge = int(raw.to_integral_value(rounding=ROUND_CEILING))  # rounded up once per request
print(charge, "micro-units =", Decimal(charge) / 1_000_000)  # 1668 micro-units = 0.001668
