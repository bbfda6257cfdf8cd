"""A local stand-in for the parts of Stripe's API that the real `stripe` library calls in this product,
and helpers that build and sign webhook events from Stripe's own example objects (tests/fixtures/stripe,
copied from stripe/openapi fixtures3.json).

The stub is a threaded HTTP server on a free port. Point the library at it with STRIPE_API_BASE. It
parses the form-encoded bodies the library sends, records every request for assertions and answers
with objects shaped like the fixtures:

- POST   /v1/webhook_endpoints        -> webhook_endpoint with a fresh `whsec_` secret
- DELETE /v1/webhook_endpoints/{id}   -> deleted
- POST   /v1/checkout/sessions        -> checkout.session (status open, unpaid, `url`)
- GET    /v1/refunds?charge=...       -> list of the refunds a test registered in `stub.refunds`
- POST   /v1/transfers                -> transfer (Stripe Connect), idempotent by Idempotency-Key as
                                         Stripe is, until `forget_idempotency_keys()` (Stripe's 24 h)
- GET    /v1/transfers?transfer_group=... -> the transfers of that group, newest first

Faults: `failing_transfers` refuses transfers (400); `drop_transfer_answers = n` makes the next n
transfer creations happen but closes the connection instead of answering (a lost answer: the client
sees a connection error, the money moved).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"


def fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


# ---- the stub server ----------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]

    @property
    def api_key(self) -> str:
        return self.headers.get("authorization", "").removeprefix("Bearer ")

    def form_list(self, name: str) -> list[str]:
        items = [(k, v) for k, v in self.form.items() if k.startswith(f"{name}[") and k[len(name) + 1 : -1].isdigit()]
        return [v for _, v in sorted(items, key=lambda kv: int(kv[0][len(name) + 1 : -1]))]

    def form_dict(self, name: str) -> dict[str, str]:
        prefix = f"{name}["
        return {k[len(prefix) : -1]: v for k, v in self.form.items() if k.startswith(prefix) and "][" not in k}


class StripeStub:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, list[dict[str, Any]]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}  # by transfer id
        self.transfer_keys: dict[str, str] = {}  # Idempotency-Key -> transfer id (Stripe keeps them 24 h)
        self.failing_transfers = False
        self.drop_transfer_answers = 0
        self.rejected_keys: set[str] = set()  # answered 401 (invalid key)
        self.forbidden_keys: set[str] = set()  # answered 403 (restricted key without the permission)
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def calls(self, method: str, path_prefix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def forget_idempotency_keys(self) -> None:
        """What 24 hours do at Stripe: the same Idempotency-Key would now create a new object."""
        with self.lock:
            self.transfer_keys.clear()

    def webhook_secret(self, endpoint_id: str) -> str:
        return self.endpoints[endpoint_id]["secret"]

    @contextlib.contextmanager
    def running(self) -> Iterator[StripeStub]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                recorded = Recorded(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    dict(parse_qsl(body, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                )
                with stub.lock:
                    stub.requests.append(recorded)
                answer = stub.answer(recorded)
                if answer is None:  # a lost answer: the work is done, the client hears nothing
                    self.close_connection = True
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(7))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    # -- routes --

    def answer(self, r: Recorded) -> tuple[int, dict[str, Any]] | None:
        key = r.api_key
        if not key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")) or key in self.rejected_keys:
            return 401, _error("invalid_request_error", f"Invalid API Key provided: {key[:8]}********{key[-4:]}")
        if key in self.forbidden_keys:
            return 403, _error(
                "invalid_request_error",
                f"The provided key '{key[:8]}***' does not have the required permissions for this endpoint.",
            )
        livemode = "_live_" in key
        if r.method == "POST" and r.path == "/v1/webhook_endpoints":
            return 200, self._create_endpoint(r, livemode)
        if r.method == "DELETE" and r.path.startswith("/v1/webhook_endpoints/"):
            endpoint_id = r.path.rsplit("/", 1)[1]
            if self.endpoints.pop(endpoint_id, None) is None:
                return 404, _error("invalid_request_error", f"No such webhook endpoint: '{endpoint_id}'")
            return 200, {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
        if r.method == "POST" and r.path == "/v1/checkout/sessions":
            return 200, self._create_session(r, livemode)
        if r.method == "GET" and r.path == "/v1/refunds":
            data = self.refunds.get(r.query.get("charge", ""), [])
            return 200, {"object": "list", "data": data, "has_more": False, "url": "/v1/refunds"}
        if r.method == "POST" and r.path == "/v1/transfers":
            return self._create_transfer(r, livemode)
        if r.method == "GET" and r.path == "/v1/transfers":
            group = r.query.get("transfer_group")
            with self.lock:
                found = [t for t in self.transfers.values() if group is None or t.get("transfer_group") == group]
            found.sort(key=lambda t: (t["created"], t["id"]), reverse=True)
            return 200, {"object": "list", "data": found, "has_more": False, "url": "/v1/transfers"}
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({r.method}: {r.path}).")

    def _create_transfer(self, r: Recorded, livemode: bool) -> tuple[int, dict[str, Any]] | None:
        if self.failing_transfers:
            return 400, _error("invalid_request_error", "Insufficient funds in balance")
        key = r.headers.get("idempotency-key", "")
        with self.lock:
            if key and key in self.transfer_keys:
                transfer = self.transfers[self.transfer_keys[key]]
            else:
                transfer = fixture("transfer") if (FIXTURES / "transfer.json").exists() else {}
                transfer.update(
                    id="tr_" + secrets.token_hex(12),
                    object="transfer",
                    amount=int(r.form["amount"]),
                    currency=r.form["currency"],
                    destination=r.form["destination"],
                    transfer_group=r.form.get("transfer_group"),
                    metadata=r.form_dict("metadata"),
                    livemode=livemode,
                    created=int(time.time()),
                )
                self.transfers[transfer["id"]] = transfer
                if key:
                    self.transfer_keys[key] = transfer["id"]
            if self.drop_transfer_answers > 0:
                self.drop_transfer_answers -= 1
                return None
        return 200, transfer

    def _create_endpoint(self, r: Recorded, livemode: bool) -> dict[str, Any]:
        endpoint = fixture("webhook_endpoint")
        endpoint.update(
            id="we_" + secrets.token_hex(12),
            url=r.form["url"],
            enabled_events=r.form_list("enabled_events"),
            description=r.form.get("description"),
            api_version=r.form.get("api_version"),
            livemode=livemode,
            created=int(time.time()),
            secret="whsec_" + secrets.token_hex(16),  # returned on creation only, as Stripe does
        )
        with self.lock:
            self.endpoints[endpoint["id"]] = endpoint
        return endpoint

    def _create_session(self, r: Recorded, livemode: bool) -> dict[str, Any]:
        session = fixture("checkout_session")
        unit = int(r.form["line_items[0][price_data][unit_amount]"])
        quantity = int(r.form.get("line_items[0][quantity]", "1"))
        session_id = ("cs_live_" if livemode else "cs_test_") + secrets.token_hex(24)
        session.update(
            id=session_id,
            amount_subtotal=unit * quantity,
            amount_total=unit * quantity,
            currency=r.form["line_items[0][price_data][currency]"],
            client_reference_id=r.form.get("client_reference_id"),
            metadata=r.form_dict("metadata"),
            mode=r.form["mode"],
            success_url=r.form["success_url"],
            cancel_url=r.form.get("cancel_url"),
            livemode=livemode,
            payment_status="unpaid",
            status="open",
            payment_intent=None,
            created=int(time.time()),
            url=f"https://checkout.stripe.com/c/pay/{session_id}",
        )
        with self.lock:
            self.sessions[session_id] = session
        return session


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


# ---- events -------------------------------------------------------------------------------------


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's scheme, written out: v1 = HMAC-SHA256(secret, f"{t}.{body}")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, obj: dict[str, Any], *, livemode: bool = False) -> dict[str, Any]:
    envelope = fixture("event")
    envelope.update(
        id="evt_" + secrets.token_hex(12),
        type=event_type,
        livemode=livemode,
        created=int(time.time()),
        pending_webhooks=1,
        data={"object": obj},
    )
    return envelope


def checkout_session(
    *,
    paywall_id: str,
    environment: str,
    user: str,
    cents: int,
    payment_status: str = "paid",
    currency: str = "usd",
    session_id: str | None = None,
    payment_intent: str | None = None,
    amount_micros: int | None = None,
) -> dict[str, Any]:
    session = fixture("checkout_session")
    livemode = environment == "live"
    session.update(
        id=session_id or ("cs_live_" if livemode else "cs_test_") + secrets.token_hex(24),
        amount_subtotal=cents,
        amount_total=cents,
        currency=currency,
        client_reference_id=f"{paywall_id}:{environment}:{user}",
        livemode=livemode,
        metadata={
            "paywall_id": paywall_id,
            "environment": environment,
            "user": user,
            "amount_micros": str(cents * 10_000 if amount_micros is None else amount_micros),
        },
        payment_intent=payment_intent or "pi_" + secrets.token_hex(12),
        payment_status=payment_status,
        status="complete" if payment_status == "paid" else "complete",
    )
    return session


def refund(refund_id: str, cents: int, *, payment_intent: str, charge_id: str, status: str = "succeeded") -> dict:
    obj = fixture("refund")
    obj.update(id=refund_id, amount=cents, payment_intent=payment_intent, charge=charge_id, status=status)
    return obj


def refunded_charge(
    *, payment_intent: str, cents: int, refunds: list[dict[str, Any]] | None, charge_id: str | None = None
) -> dict[str, Any]:
    """A `charge.refunded` object; refunds=None leaves the list out, as recent API versions do."""
    charge = fixture("charge")
    charge.update(
        id=charge_id or "ch_" + secrets.token_hex(12),
        amount=cents,
        amount_captured=cents,
        amount_refunded=sum(r["amount"] for r in refunds or []),
        captured=True,
        payment_intent=payment_intent,
        refunded=True,
    )
    if refunds is None:
        charge.pop("refunds", None)
    else:
        charge["refunds"] = {"object": "list", "data": refunds, "has_more": False, "url": "/v1/refunds"}
    return charge


def dispute(*, payment_intent: str, cents: int, status: str, dispute_id: str | None = None) -> dict[str, Any]:
    obj = fixture("dispute")
    obj.update(
        id=dispute_id or "dp_" + secrets.token_hex(12), amount=cents, payment_intent=payment_intent, status=status
    )
    return obj
