"""Charge for a tool call (an MCP server, a search, an image) with /v1/user/charge."""

import os

import httpx

api = httpx.Client(
    base_url=os.environ["PAYWALLS_BASE_URL"], headers={"Authorization": f"Bearer {os.environ['PAYWALLS_API_KEY']}"}
)


def charge_for_tool(user: str, tool: str, price: str, call_id: str) -> tuple[bool, str]:
    """(charged?, message). Not enough balance is not an error: success is false and the message is
    the paywall's ready-to-show top-up text, with its link. Nothing is charged then."""
    response = api.post(
        "/user/charge",
        json={"user": user, "amount": price, "metadata": {"tool": tool}},
        headers={"Idempotency-Key": call_id},  # one charge per tool call, however often it is retried
    )
    response.raise_for_status()
    result = response.json()
    return result["success"], result["message"]


charged, message = charge_for_tool("alice", "web_search", "0.02", "call-7f3a")
if charged:
    print("run the tool:", message)
else:
    print("show the user:", message)
