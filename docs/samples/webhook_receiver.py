"""Receive your paywall's webhooks: check the signature on the raw body, then dedupe on the event id.
Under `make run` a receiver on http://127.0.0.1 is accepted; a deployed stack takes https URLs only."""

import hashlib
import hmac
import json
import os
import queue
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import httpx

api = httpx.Client(
    base_url=os.environ["PAYWALLS_BASE_URL"], headers={"Authorization": f"Bearer {os.environ['PAYWALLS_API_KEY']}"}
)
received: queue.Queue = queue.Queue()
seen: set[str] = set()  # event ids already handled (keep them in your database)
SECRET = "whsec_" + uuid.uuid4().hex  # or let Paywalls generate one: it is answered once, on creation


def verified(body: bytes, signature: str) -> bool:
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class Webhooks(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not verified(body, self.headers.get("X-Paywalls-Signature", "")):
            self.send_response(401)  # not from your paywall: a 401 ends the delivery
            self.end_headers()
            return
        event = json.loads(body)["event"]
        if event["id"] not in seen:  # a retried delivery carries the same event id
            seen.add(event["id"])
            received.put(event)
        self.send_response(200)  # any 2xx; anything else (or no answer in 10 s) is retried
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Webhooks)
Thread(target=server.serve_forever, daemon=True).start()
subscription = api.post(
    "/webhooks/subscriptions",
    json={
        "url": f"http://127.0.0.1:{server.server_address[1]}/paywalls",
        "events": ["paywall.balance.deposit.created"],
        "secret": SECRET,
    },
).json()["subscription"]

user = f"hook-{uuid.uuid4().hex[:8]}"
api.post("/user/balance/deposit", json={"user": user, "amount": "2"}, headers={"Idempotency-Key": uuid.uuid4().hex})
event = received.get(timeout=30)
assert event["data"]["externalUserId"] == user  # your own user id, on every event about a user
print(f"verified {event['type']} for the user: {event['data']['amountFormatted']}")
api.delete(f"/webhooks/subscriptions/{subscription['id']}")  # soft delete: isActive false
server.shutdown()
