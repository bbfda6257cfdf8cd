import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["PAYWALLS_BASE_URL"], api_key=os.environ["PAYWALLS_API_KEY"])
reply = client.chat.completions.create(
    model="demo/echo",
    user="alice",  # your app's id for whoever is asking: each user has their own balance
    messages=[{"role": "user", "content": "Hello, paywall!"}],
)
print(reply.choices[0].message.content)
