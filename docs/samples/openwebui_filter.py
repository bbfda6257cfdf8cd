"""Open WebUI: a filter function that sends each Open WebUI user's id as the paywall user.

In Open WebUI: Admin Panel > Functions > + (new function), paste the class below, enable it, and
attach it to the models served through the Paywalls connection (Admin Panel > Settings >
Connections: OpenAI API, base URL = your OpenAIBaseUrl, key = an sk-paywalls- key)."""

import os

from openai import OpenAI


# --8<-- [start:filter]
class Filter:
    """Open WebUI calls inlet() with the request body before it is sent to the model."""

    def inlet(self, body: dict, __user__: dict | None = None) -> dict:
        if __user__ and __user__.get("id"):
            # The body's `user` decides who pays (it wins over the header and the path).
            body["user"] = f"owui-{__user__['id']}"
        return body


# --8<-- [end:filter]


# What Open WebUI does with it, in short: the filtered body goes to the OpenAI-compatible endpoint.
body = Filter().inlet(
    {"model": "demo/echo", "messages": [{"role": "user", "content": "Hello from Open WebUI"}]},
    __user__={"id": "8d1c4e2a", "name": "Dana", "email": "dana@example.com", "role": "user"},
)
client = OpenAI(base_url=os.environ["PAYWALLS_BASE_URL"], api_key=os.environ["PAYWALLS_API_KEY"])
print(body["user"], "->", client.chat.completions.create(**body).choices[0].message.content)
