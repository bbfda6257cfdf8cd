// The official `openai` npm package on the Responses API and embeddings through the proxy (run by
// tests/test_chat_js.py with PAYWALLS_BASE_URL, PAYWALLS_API_KEY, PAYWALLS_USER (funded) and
// PAYWALLS_BROKE_USER). Each test prints one `RESULT {...}` line; pytest checks the charges.
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

test("responses.create with usage", async () => {
  const { data: response, response: raw } = await client(PAYWALLS_USER)
    .responses.create({ model: "demo/echo", input: "created from node js", max_output_tokens: 30 })
    .withResponse();
  assert.equal(response.output_text, "created from node js");
  assert.equal(raw.headers.get("x-paywall-provider"), "default");
  console.log("RESULT " + JSON.stringify({ test: "create", text: response.output_text, usage: response.usage }));
});

test("responses.stream with the final response", async () => {
  const stream = client(PAYWALLS_USER).responses.stream({ model: "demo/echo", input: "streamed responses from node" });
  let text = "";
  for await (const event of stream) {
    if (event.type === "response.output_text.delta") text += event.delta;
  }
  const final = await stream.finalResponse();
  assert.equal(text, "streamed responses from node");
  assert.equal(final.output_text, text);
  console.log("RESULT " + JSON.stringify({ test: "stream", text, usage: final.usage }));
});

test("embeddings.create", async () => {
  const result = await client(PAYWALLS_USER).embeddings.create({
    model: "demo/echo",
    input: ["one two three", "four five"],
    dimensions: 4,
  });
  assert.equal(result.data.length, 2);
  assert.equal(result.data[0].embedding.length, 4);
  console.log("RESULT " + JSON.stringify({ test: "embeddings", usage: result.usage }));
});

test("a user without balance gets the paywall message from the Responses API", async () => {
  const { data: response, response: raw } = await client(PAYWALLS_BROKE_USER)
    .responses.create({ model: "demo/echo", input: "hello" })
    .withResponse();
  assert.equal(raw.headers.get("x-paywall-action"), "topup");
  assert.match(response.output_text, /\/pay\//);
  console.log("RESULT " + JSON.stringify({ test: "paywall", action: raw.headers.get("x-paywall-action") }));
});
