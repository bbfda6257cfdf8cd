"""A chat app with top-ups: answer, or show the paywall's message and a top-up button."""

import os

import httpx
from openai import OpenAI

base_url, api_key = os.environ["PAYWALLS_BASE_URL"], os.environ["PAYWALLS_API_KEY"]
client = OpenAI(base_url=base_url, api_key=api_key)


def chat(user: str, text: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="demo/echo", user=user, messages=[{"role": "user", "content": text}]
    )
    reply = raw.parse().choices[0].message.content
    # A paywall reply is a normal assistant message (apps that ignore the header still work); the
    # header says which one it is: topup (default mode), authorize or cap (shared mode).
    action = raw.headers.get("x-paywall-action")
    if action is None:
        print("assistant:", reply)
        return
    print(f"paywall ({action}):", reply)
    if action == "topup":
        # The same link, for a "Top up" button that is always there.
        link = httpx.get(
            f"{base_url}/user/balance/topup", params={"user": user}, headers={"Authorization": f"Bearer {api_key}"}
        )
        print("top-up button ->", link.json()["url"])


chat("carol", "Hello!")  # a new user: no balance yet
