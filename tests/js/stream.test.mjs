// The official `openai` npm package against the proxy (run by tests/test_chat_js.py, which starts the
// local stack and passes PAYWALLS_BASE_URL, PAYWALLS_API_KEY, PAYWALLS_USER (funded) and
// PAYWALLS_BROKE_USER (no balance)). Each test prints one `RESULT {...}` line for pytest to check.
import assert from "node:assert/strict";
import { test } from "node:test";
import OpenAI from "openai";

const { PAYWALLS_BASE_URL, PAYWALLS_API_KEY, PAYWALLS_USER, PAYWALLS_BROKE_USER } = process.env;

function client(user) {
  return new OpenAI({
    baseURL: PAYWALLS_BASE_URL,
    apiKey: PAYWALLS_API_KEY,
    defaultHeaders: { "X-Paywall-User": user },
    maxRetries: 0,
  });
}

test("streams an echo with usage", async () => {
  const stream = await client(PAYWALLS_USER).chat.completions.create({
    model: "demo/echo",
    messages: [{ role: "user", content: "streamed from node js" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let chunks = 0;
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.delta?.content ?? "";
      finish = choice.finish_reason ?? finish;
    }
  }
  assert.equal(text, "streamed from node js");
  assert.equal(finish, "stop");
  assert.ok(chunks >= 4, `expected several chunks, got ${chunks}`);
  assert.deepEqual(usage, { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 });
  console.log("RESULT " + JSON.stringify({ test: "echo", text, chunks, usage }));
});

test("a user without balance gets the top-up message as a stream", async () => {
  const { data: stream, response } = await client(PAYWALLS_BROKE_USER)
    .chat.completions.create({
      model: "demo/echo",
      messages: [{ role: "user", content: "hello" }],
      stream: true,
    })
    .withResponse();
  let text = "";
  for await (const chunk of stream) {
    for (const choice of chunk.choices) text += choice.delta?.content ?? "";
  }
  assert.equal(response.headers.get("x-paywall-action"), "topup");
  assert.match(text, /\/pay\//);
  console.log("RESULT " + JSON.stringify({ test: "paywall", action: response.headers.get("x-paywall-action") }));
});
