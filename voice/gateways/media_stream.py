"""A call carried on one WebSocket: what Twilio Media Streams and raw-PCM audio forks share.

Both read the peer's messages into caller events, tick a sender every 20 ms,
and end the call when the peer stops, closes or goes quiet. Each protocol
subclass says how a text or binary message becomes events, how a tick sends
assistant audio, and how to flush what the peer has queued (barge-in).
A malformed message is logged and skipped: one bad frame must not end a call,
let alone the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import numpy as np

from voice.gateways.line import FRAME_S, EventInbox, FrameClock
from voice.gateways.webhook import post_summary, transfer_payload
from voice.transport import CallInfo, LineEvent, Playout
from voicedesk.config import TelephonyConfig

log = logging.getLogger(__name__)

MAX_PROBLEMS = 50  # malformed messages tolerated in one call before we hang up on it
TRANSFER_DRAIN_S = 10.0  # longest wait for queued words ("transferring you now") to play
CLOSE_TIMEOUT_S = 2.0


class MediaStreamLine:
    """The ``Transport`` of one WebSocket call; subclasses speak the protocol."""

    protocol = ""

    def __init__(self, ws: Any, info: CallInfo, config: TelephonyConfig,
                 idle_timeout_s: float) -> None:
        self._ws = ws
        self.info = info
        self._config = config
        self._idle_timeout_s = idle_timeout_s
        self._inbox = EventInbox()
        self._playout = Playout()
        self._send_lock = asyncio.Lock()  # one protocol message sequence at a time
        self._problems = 0
        self._flush_due = False
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    def __str__(self) -> str:
        return self.info.call_id

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read(), name=f"{self.protocol}-read-{self}"),
                       asyncio.create_task(self._send(), name=f"{self.protocol}-send-{self}")]

    # What a protocol defines ---------------------------------------------------

    def on_json(self, message: dict[str, Any]) -> bool:
        """Handle one JSON text message; False when the peer has ended the call."""
        raise NotImplementedError

    def on_binary(self, data: bytes) -> None:
        self.problem(f"unexpected binary message of {len(data)} bytes")

    async def tick(self) -> None:
        """Send what is due this 20 ms (called with the send lock held)."""
        raise NotImplementedError

    async def flush_peer(self) -> None:
        """Tell the peer to drop audio it has queued (called with the send lock held)."""
        raise NotImplementedError

    @property
    def unheard_samples(self) -> int:
        """Samples queued here or at the peer that the caller has not heard yet."""
        return self._playout.queued

    @property
    def heard_samples(self) -> int:
        return self._playout.played

    # Transport -----------------------------------------------------------------

    async def receive(self) -> LineEvent:
        return await self._inbox.receive()

    def play(self, samples: np.ndarray) -> None:
        self._playout.put(samples)

    def clear(self) -> None:
        self._playout.clear()
        self._flush_due = True  # before any audio queued after this clear goes out
        if not self._closing:
            self._spawn(self._flush())

    @property
    def played_s(self) -> float:
        return self.heard_samples / self.info.sample_rate

    @property
    def pending_s(self) -> float:
        return self.unheard_samples / self.info.sample_rate

    async def transfer(self, target: str, summary: dict[str, Any]) -> bool:
        """Summary by webhook, queued words played out, then the stream ends and the
        call's next step (TwiML after ``<Connect>``, the jambonz app) takes over."""
        if self._closing or self._inbox.closed is not None:
            return False
        target = target or self._config.transfer_target
        if self._config.summary_webhook:
            await post_summary(self._config.summary_webhook,
                               transfer_payload(self.info, target, summary))
        else:
            log.warning("call %s: transfer to %r without [telephony] summary_webhook: the "
                        "stream ends but the agent gets no summary", self, target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TRANSFER_DRAIN_S
        while self.unheard_samples and loop.time() < deadline and self._inbox.closed is None:
            await asyncio.sleep(FRAME_S)
        if self._inbox.closed is not None:
            return False
        self._inbox.close("transferred")
        await self.before_transfer(target)
        await self.close()
        return True

    async def before_transfer(self, target: str) -> None:
        """A protocol's last word before the stream ends for a transfer (none by default)."""

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._inbox.close("hangup")
        read, send = self._tasks or (None, None)
        if send is not None:
            send.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await send
        for task in list(self._background):
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT_S)
        if read is not None:
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await read

    # Plumbing ------------------------------------------------------------------

    def problem(self, what: str) -> None:
        """Log a malformed message; after too many, hang up on the peer."""
        self._problems += 1
        log.warning("call %s (%s): ignored a message: %s", self, self.protocol, what)
        if self._problems >= MAX_PROBLEMS and self._inbox.closed is None:
            log.error("call %s: %d malformed messages; hanging up on the peer", self,
                      self._problems)
            self._inbox.close("error")
            self._spawn(self.close())

    async def send_json(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _flush(self) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async with self._send_lock:
                await self._flush_if_due()

    async def _flush_if_due(self) -> None:
        if self._flush_due:
            self._flush_due = False
            await self.flush_peer()

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        reason = "hangup"
        try:
            while True:
                try:
                    message = await asyncio.wait_for(self._ws.recv(), self._idle_timeout_s)
                except TimeoutError:
                    log.warning("call %s: nothing from the %s peer for %g s; treating the "
                                "line as dead", self, self.protocol, self._idle_timeout_s)
                    reason = "timeout"
                    break
                except ConnectionClosedOK:
                    break
                except ConnectionClosed as exc:
                    log.warning("call %s: the %s peer's connection broke: %s", self,
                                self.protocol, exc)
                    reason = "error"
                    break
                if isinstance(message, bytes):
                    self.on_binary(message)
                    continue
                try:
                    data = json.loads(message)
                except ValueError:
                    self.problem(f"invalid JSON {message[:80]!r}")
                    continue
                if not isinstance(data, dict):
                    self.problem(f"JSON {message[:80]!r} is not an object")
                    continue
                if not self.on_json(data):
                    break
        finally:
            self._inbox.close(reason)

    async def _send(self) -> None:
        from websockets.exceptions import ConnectionClosed

        clock = FrameClock()
        try:
            while True:
                await clock.wait()
                async with self._send_lock:
                    await self._flush_if_due()
                    await self.tick()
        except ConnectionClosed:
            pass  # the reader sees the close and says why
