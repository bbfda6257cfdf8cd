import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["PAYWALLS_BASE_URL"], api_key=os.environ["PAYWALLS_API_KEY"])
stream = client.chat.completions.create(
    model="demo/echo",
    user="alice",
    messages=[{"role": "user", "content": "one word at a time"}],
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
