"""Operational telemetry: CloudWatch metrics and X-Ray traces, with Powertools, kept off the import path.

Metrics are Embedded Metric Format (EMF) log lines built by Powertools' EMF provider: CloudWatch
extracts them from the function's log group, so emitting one costs no API call. `emit()` writes one
line per call, at once (a streamed chat may outlive any per-invocation flush):

- every name is declared in METRICS with its unit; an undeclared name is a programming error (it
  would silently create a metric no alarm or dashboard watches). template.yaml's alarms and dashboard
  may only use what the code emits: tests/test_telemetry.py derives that from the `emit(...)` calls.
- dimensions: always `service`; `by=` adds a second dimension set (service + by), so a metric is
  both a total (for alarms) and split (e.g. by paywall and model, for the dashboard). Values must be
  low-cardinality (a paywall id, a priced model, an outcome): never a user id.
- off when no namespace is configured (POWERTOOLS_METRICS_NAMESPACE: set by the template; unset for
  `make run` and unit tests) or when POWERTOOLS_METRICS_DISABLED is true: nothing is written, nothing fails.

Tracing (Powertools Tracer, X-Ray) only runs in Lambda with POWERTOOLS_TRACE_DISABLED false. The
X-Ray SDK costs ~200-400 ms to import, so nothing imports it until `tracer()` is first called: the
chat app does that in its startup hook (Lambda's init phase), never at module import. The Tracer
patches requests/httplib (Stripe's HTTP client) and botocore when loaded; `subsegment()` names the
provider call, the Stripe operations, and each DynamoDB and Secrets Manager call on the http
transport (`dynamodb`, `secretsmanager`, with the operation as an annotation).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from paywalls.infra.config import set_trace_id, settings

log = logging.getLogger(__name__)

COUNT = "Count"
MILLISECONDS = "Milliseconds"
SECONDS = "Seconds"
MICROS = "None"  # money in micro-units of the paywall's currency (CloudWatch has no currency unit)

# Every metric the code emits: name -> unit. README "Operate" says what each means.
METRICS: dict[str, str] = {
    # chat proxy: one Requests per request, by outcome (served, paywall_reply, rate_limited,
    # client_error, provider_rejected, provider_error, server_error); PaywallReplies by action.
    "Requests": COUNT,
    "PaywallReplies": COUNT,
    "LimitRefusals": COUNT,  # by limit: requests_per_minute, tokens_per_day, spend_per_day, spend_per_month
    # settled charges, by paywall and model
    "Charges": COUNT,
    "RevenueMicros": MICROS,
    "PromptTokens": COUNT,
    "CompletionTokens": COUNT,
    "SettlementFailures": COUNT,  # served but the charge could not be written (the sweeper releases the hold)
    # the provider, by provider kind
    "ProviderLatency": MILLISECONDS,  # request sent -> whole answer (buffered) / stream ended
    "ProviderTimeToFirstByte": MILLISECONDS,  # request sent -> first streamed chunk
    "ProviderFallbacks": COUNT,  # a provider failed before the first byte; the route's next one is tried
    # ledger contention
    "HoldRetries": COUNT,  # a hold lost a race for the funds or a limit and was planned again
    "PostingConflicts": COUNT,  # a posting (settle, charge, credit) lost an optimistic version race
    "DynamoDBRetries": COUNT,  # a throttled / conflicting DynamoDB call retried
    "StoreUnavailable": COUNT,  # DynamoDB still refused after every retry (the client got a 503)
    # sweeper
    "HoldsReleased": COUNT,
    "OverdueHolds": COUNT,  # active holds past their expiry by more than a sweep interval
    "OldestOverdueHoldAge": SECONDS,
    # Stripe webhooks, by outcome (processed, invalid_signature, retry_later)
    "StripeWebhookEvents": COUNT,
    # outbound webhooks: deliveries queued by the dispatcher; attempts by outcome (success, retry,
    # error: given up, skipped: nothing to attempt, crashed: the handler failed)
    "WebhookEventsQueued": COUNT,
    "WebhookDeliveries": COUNT,
}

_write_lock = threading.Lock()


def namespace() -> str | None:
    return settings().metrics_namespace


def _disabled() -> bool:
    return settings().metrics_disabled


def emit(values: Mapping[str, float], by: Mapping[str, str] | None = None) -> None:
    """One EMF line with these metrics (name -> value), as a total and, with `by`, split by those
    dimensions. Call sites pass dict literals (the template test reads them). Never raises: a metric
    must not fail the request it describes."""
    unknown = sorted(set(values) - set(METRICS))
    if unknown:
        raise ValueError(f"undeclared metric(s): {', '.join(unknown)}")
    space = namespace()
    if space is None or _disabled() or not values:
        return
    try:
        line = _serialize(space, values, by)
    except Exception:  # never let telemetry break a charge; a malformed metric shows in the logs
        log.warning("metric not emitted", exc_info=True)
        return
    with _write_lock:  # one write per line: lines from threads must not interleave
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _serialize(space: str, values: Mapping[str, float], by: Mapping[str, str] | None) -> str:
    from aws_lambda_powertools.metrics import EphemeralMetrics  # already loaded with the Logger's formatter

    service = settings().service_name or "paywalls"
    metrics = EphemeralMetrics(namespace=space, service=service)
    for name, value in values.items():
        metrics.add_metric(name=name, unit=METRICS[name], value=value)
    if by:
        metrics.add_dimensions(service=service, **{k: str(v) for k, v in by.items()})
    return json.dumps(metrics.serialize_metric_set(), separators=(",", ":"))


def elapsed_ms(started: float, now: float) -> float:
    return round(max(now - started, 0.0) * 1000, 1)


# ---- tracing --------------------------------------------------------------------------------------


def tracing_enabled() -> bool:
    current = settings()
    return current.in_lambda and not current.sam_local and not current.trace_disabled


@functools.cache
def tracer() -> Any:
    """The Powertools Tracer, or None when tracing is off. First call imports the X-Ray SDK."""
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    # requests/httplib: Stripe's HTTP calls; botocore (SQS, SES; DynamoDB where botocore is the
    # transport) only when this process has loaded it already: patching imports it, ~100 ms the chat
    # function never needs. DynamoDB and Secrets Manager on the http transport name their own
    # subsegments (aws.JsonClient), as the provider call does ("## provider"); httpx is not patched.
    return Tracer(patch_modules=_traced_modules())


def _traced_modules() -> tuple[str, ...]:
    # "botocore.client", not "botocore": Powertools' package init imports botocore's (light) top
    # package in every function, to register its user-agent hook.
    return ("requests", "httplib") + (("botocore",) if "botocore.client" in sys.modules else ())


def subsegment(name: str) -> contextlib.AbstractContextManager[Any]:
    active = tracer()
    if active is None:
        return contextlib.nullcontext()
    return _guarded_subsegment(active, name)


@contextlib.contextmanager
def _guarded_subsegment(active: Any, name: str) -> Iterator[Any]:
    # X-Ray keeps its context per thread; a subsegment is best effort and never fails the call.
    try:
        manager = active.provider.in_subsegment(name)
        segment = manager.__enter__()
    except Exception:
        log.debug("no trace context for %s", name, exc_info=True)
        yield None
        return
    try:
        yield segment
    except BaseException as exc:
        manager.__exit__(type(exc), exc, exc.__traceback__)
        raise
    manager.__exit__(None, None, None)


def lambda_handler(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A Lambda entry point traced when tracing is on: its subsegment is `## handler`, its response
    never recorded (it may hold balances). The Tracer is created on the first invocation, not at
    import. `handler` may be any callable (e.g. a Mangum instance)."""

    def handler_entry(event: Any, context: Any) -> Any:
        return handler(event, context)

    handler_entry.__name__ = "handler"  # Powertools names the subsegment after it
    traced: list[Callable[[Any, Any], Any]] = []

    def entry(event: Any, context: Any) -> Any:
        active = tracer()
        if active is None:
            return handler(event, context)
        if not traced:
            traced.append(active.capture_lambda_handler(handler_entry, capture_response=False))
        return traced[0](event, context)

    return entry


def use_trace_header(headers: Mapping[str, str]) -> None:
    """Chat function (uvicorn behind the Lambda Web Adapter): the runtime's per-invocation trace id
    reaches this process as a header, not as the `_X_AMZN_TRACE_ID` variable the X-Ray SDK and the
    log formatter read. The adapter forwards one invocation at a time, so setting it per request is
    exact. The Lambda context header carries the function segment's id; API Gateway's
    X-Amzn-Trace-Id is the fallback."""
    if not settings().in_lambda:
        return
    trace_id = None
    context = headers.get("x-amzn-lambda-context")
    if context:
        try:
            parsed = json.loads(context)
            trace_id = parsed.get("xray_trace_id") if isinstance(parsed, dict) else None
        except ValueError:
            trace_id = None
    trace_id = trace_id or headers.get("x-amzn-trace-id")
    if isinstance(trace_id, str) and trace_id.startswith("Root=") and len(trace_id) < 512:
        set_trace_id(trace_id)
