import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["PAYWALLS_BASE_URL"], api_key=os.environ["PAYWALLS_API_KEY"])
alice = {"X-Paywall-User": "alice"}

reply = client.responses.create(model="demo/echo", input="hello from the Responses API", extra_headers=alice)
print(reply.output_text, reply.usage.input_tokens, reply.usage.output_tokens)

with client.responses.stream(model="demo/echo", input="streamed as events", extra_headers=alice) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="", flush=True)
print()

vectors = client.embeddings.create(model="demo/echo", input=["first text", "second"], dimensions=4, extra_headers=alice)
print(
    len(vectors.data),
    "embeddings of",
    len(vectors.data[0].embedding),
    "dimensions;",
    vectors.usage.prompt_tokens,
    "tokens",
)
