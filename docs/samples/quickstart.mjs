import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.PAYWALLS_BASE_URL, apiKey: process.env.PAYWALLS_API_KEY });
const reply = await client.chat.completions.create({
  model: "demo/echo",
  user: "alice", // your app's id for whoever is asking: each user has their own balance
  messages: [{ role: "user", content: "Hello, paywall!" }],
});
console.log(reply.choices[0].message.content);
