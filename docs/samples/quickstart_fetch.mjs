const response = await fetch(`${process.env.PAYWALLS_BASE_URL}/chat/completions`, {
  method: "POST",
  headers: {
    Authorization: `Bearer ${process.env.PAYWALLS_API_KEY}`,
    "Content-Type": "application/json",
    "X-Paywall-User": "alice",
  },
  body: JSON.stringify({ model: "demo/echo", messages: [{ role: "user", content: "Hello, paywall!" }] }),
});
if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
const reply = await response.json();
console.log(reply.choices[0].message.content);
