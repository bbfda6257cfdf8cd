"""Credit a user from your own payment rails (default mode): call this once your payment succeeded."""

import os

import httpx

api = httpx.Client(
    base_url=os.environ["PAYWALLS_BASE_URL"], headers={"Authorization": f"Bearer {os.environ['PAYWALLS_API_KEY']}"}
)


def credit(user: str, amount: str, payment_id: str) -> dict:
    # The Idempotency-Key is your payment's id: a retry (or a duplicate delivery) never credits twice.
    response = api.post(
        "/user/balance/deposit",
        json={"user": user, "amount": amount, "metadata": {"payment": payment_id}},
        headers={"Idempotency-Key": payment_id},
    )
    response.raise_for_status()
    return response.json()


first = credit("bob", "5", "payment-1001")
again = credit("bob", "5", "payment-1001")  # the same payment delivered twice
print(first["balanceFormatted"], again["balanceFormatted"])  # 5.000000 5.000000: credited once
