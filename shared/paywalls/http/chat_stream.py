"""The streamed reply of a metered chat completion: provider chunks reach the client as they come,
and the request is charged however the stream ends.

- Each chunk is forwarded as the provider wrote it, except the usage-only chunk the client did not
  ask for (metering.StreamTally decides).
- Client disconnect: the ASGI call does not end with the client; it keeps reading the provider for
  at most `drain_timeout_s` more, to learn the usage, and then settles. Because the call itself
  stays alive (no detached task), Lambda does not freeze the environment before the charge is written.
- Provider failure mid-stream (timeout, broken connection, invalid JSON, an error event): the
  client gets an OpenAI-style error event (the SDKs raise it) and no [DONE]; what was generated is
  charged as in Reservation.finish_stream (usage if reported, else the estimate, else nothing).
- Time limit (`deadline`, on anyio's clock): a stream still running then is ended by us, with an
  error event, and charged the same way. Lambda would otherwise kill the invocation mid-stream and
  the hold would be swept: the whole answer served for free.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from paywalls.billing.metering import StreamTally
from paywalls.chat import replies as chat_replies
from paywalls.chat import sse
from paywalls.chat.billing import Reservation
from paywalls.chat.providers import Chunk, ChunkStream, ProviderFailure
from paywalls.infra import telemetry

log = logging.getLogger(__name__)

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class StreamFormat:
    """What differs between the event streams the proxy meters (chat chunks, Responses events)."""

    is_error: Callable[[Chunk], bool]  # the provider reports an error instead of the answer
    error_event: Callable[[str, str], bytes]  # (message, code): the event that ends a broken stream
    done: bytes  # sent after the charge when the answer completed (chat's [DONE]; b"" for none)
    # A terminal event (Responses' `response.completed`...): held back and sent after the charge,
    # so that a client that reads its balance once it has it sees this request's charge.
    is_terminal: Callable[[Chunk], bool]


CHAT_STREAM = StreamFormat(
    is_error=lambda chunk: chunk.is_error,
    error_event=lambda message, code: sse.json_event(chat_replies.stream_error(message, code=code)),
    done=sse.DONE,
    is_terminal=lambda chunk: False,
)


class MeteredStream(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        first: Chunk,
        chunks: AsyncGenerator[Chunk, None],
        upstream: ChunkStream,
        reservation: Reservation,
        tally: StreamTally | Any,  # StreamTally or an endpoint's own (chat.responses.ResponsesTally)
        failure_text: str,
        drain_timeout_s: float,
        deadline: float,
        time_limit_text: str,
        headers: Mapping[str, str] | None = None,
        started_at: float | None = None,  # time.monotonic() when the provider was called (metrics)
        provider_kind: str = "",
        stream_format: StreamFormat = CHAT_STREAM,
    ):
        self.status_code = 200
        self.background = None
        self.init_headers({**STREAM_HEADERS, **(headers or {})})
        self._first = first
        self._chunks = chunks
        self._upstream = upstream
        self._reservation = reservation
        self._tally = tally
        self._failure_text = failure_text
        self._drain_timeout_s = drain_timeout_s
        self._time_limit_text = time_limit_text
        self._started_at = started_at
        self._provider_kind = provider_kind
        self._format = stream_format
        self._terminal: bytes = b""  # a held-back terminal event (StreamFormat.is_terminal)
        self._client_gone = False
        self._tasks: anyio.abc.TaskGroup | None = None
        self._ended = False  # the last event (or the charge before it) is under way
        # Cancelled at the time limit, or earlier once the client left and the drain time is over.
        self._pump_scope = anyio.CancelScope(deadline=deadline)

    def _client_left(self) -> None:
        if not self._client_gone:
            self._client_gone = True
            # From now on we only read to learn the usage, and only for so long.
            self._pump_scope.deadline = min(self._pump_scope.deadline, anyio.current_time() + self._drain_timeout_s)

    async def _write(self, send: Send, data: bytes) -> None:
        if self._client_gone:
            return
        try:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        except OSError:
            self._client_left()

    async def _watch_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._client_left()
                return

    async def _relay(self, send: Send, chunk: Chunk) -> bool:
        """Forward one chunk; False when the stream must stop (the provider sent an error)."""
        if self._format.is_error(chunk):
            log.warning("provider error event mid-stream", extra={"request_id": self._reservation.request_id})
            await self._end(send, sse.event(chunk.data, chunk.event))
            return False
        if self._format.is_terminal(chunk):
            self._tally.observe(chunk.payload)
            self._terminal += sse.event(chunk.data, chunk.event)
            return True
        if self._tally.observe(chunk.payload):
            await self._write(send, sse.event(chunk.data, chunk.event))
        return True

    async def _end(self, send: Send, last_event: bytes) -> None:
        # Charge first, then tell the client the stream is over: a client that checks its balance
        # right after [DONE] already sees this request's charge.
        self._ended = True
        await self._reservation.finish_stream(self._tally)
        await self._write(send, last_event)

    async def _pump(self, send: Send) -> None:
        try:
            if not await self._relay(send, self._first):
                return
            # While the rest is relayed, read the wallet once, so that the charge at the end is a
            # single transaction between the last chunk and [DONE] (chat_billing module doc).
            self._tasks.start_soon(self._reservation.prefetch)
            async for chunk in self._chunks:
                if not await self._relay(send, chunk):
                    return
        except ProviderFailure as failure:
            log.warning("provider failed mid-stream", extra={"request_id": self._reservation.request_id})
            code = "provider_timeout" if failure.status == 504 else "provider_error"
            await self._end(send, self._terminal + self._format.error_event(self._failure_text, code))
            return
        if self._upstream.done:
            self._tally.finished = True
        if self._tally.finished:
            await self._end(send, self._terminal + self._format.done)
        else:  # the provider hung up without finishing the answer
            await self._end(send, self._format.error_event(self._failure_text, "provider_error"))

    async def _stopped(self, send: Send) -> None:
        """The pump was cancelled: the drain time after a disconnect, or the stream's time limit."""
        if self._client_gone:
            log.warning(
                "stopped reading the provider %.0f s after the client left; settling with what is known",
                self._drain_timeout_s,
                extra={"request_id": self._reservation.request_id},
            )
        elif not self._ended:
            log.warning("stream reached its time limit; ending it", extra={"request_id": self._reservation.request_id})
            await self._end(send, self._format.error_event(self._time_limit_text, "stream_time_limit"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._watch_disconnect, receive)
                try:
                    await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                except OSError:
                    self._client_left()
                self._tasks = tasks
                with self._pump_scope:
                    await self._pump(send)
                if self._pump_scope.cancelled_caught:
                    await self._stopped(send)
                if not self._client_gone:
                    with contextlib.suppress(OSError):  # gone in the meantime: nothing left to tell it
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._chunks.aclose()
                    await self._upstream.aclose()
                except Exception:  # closing a broken connection may fail; the charge matters more
                    log.debug("closing the provider stream failed", exc_info=True)
                await self._reservation.finish_stream(self._tally)
            if self._started_at is not None:
                elapsed = telemetry.elapsed_ms(self._started_at, time.monotonic())
                telemetry.emit({"ProviderLatency": elapsed}, by={"provider": self._provider_kind})
