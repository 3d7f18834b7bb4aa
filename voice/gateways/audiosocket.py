"""Asterisk AudioSocket: Asterisk dials in over TCP and streams the call as signed linear PCM.

Every message is ``kind`` (1 byte), ``length`` (2 bytes, big-endian) and the
payload. Asterisk sends the call's UUID first, then audio (``0x10``: 8 kHz;
``0x11``-``0x18``: 12 to 192 kHz on recent releases), DTMF digits (``0x03``)
and a hang-up (``0x00``). We may answer only with audio or a hang-up: anything
else makes Asterisk drop the channel out of AudioSocket. Asterisk also gives
up after about 2 s without activity, and some releases read one frame from us
for each frame they send, so the sender answers every 20 ms, with silence when
the assistant is quiet.

AudioSocket carries no caller number and cannot transfer. The caller number
can ride in the UUID (see ``caller_from_uuid`` and docs/telephony.md); a
transfer POSTs the summary to ``[telephony] summary_webhook`` and hangs up,
after which Asterisk continues the dialplan (recent releases treat our hang-up
as a graceful end of ``AudioSocket()``), where the operator routes the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.audio import resample
from voice.gateways.base import CallHandler
from voice.gateways.line import (
    FRAME_S,
    EventInbox,
    FrameClock,
    float_to_pcm16,
    pcm16_to_float,
)
from voice.gateways.webhook import post_summary, transfer_payload
from voice.transport import DTMF_DIGITS, CallInfo, LineEvent, Playout
from voicedesk.config import TelephonyConfig

log = logging.getLogger(__name__)

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF
AUDIO_RATES = {0x10: 8_000, 0x11: 12_000, 0x12: 16_000, 0x13: 24_000, 0x14: 32_000,
               0x15: 44_100, 0x16: 48_000, 0x17: 96_000, 0x18: 192_000}
RATE_KINDS = {rate: kind for kind, rate in AUDIO_RATES.items()}

HEADER_BYTES = 3
MAX_AUDIO_S = 0.2  # Asterisk sends 20 ms frames; a longer audio payload is a broken peer
MAX_PROBLEMS = 50  # malformed frames tolerated in one call before we hang up on it
FIRST_AUDIO_TIMEOUT_S = 2.0  # the line rate is that of the first audio frame; else 8 kHz
TRANSFER_DRAIN_S = 10.0  # longest wait for queued words ("transferring you now") to play
CALLER_MARK = "ca11"  # third UUID group that says "the last 16 hex digits carry the number"
_CALLER_TAIL = re.compile(r"f*([0-9]{1,16})")


class TruncatedFrame(Exception):
    """The peer closed the socket in the middle of a frame."""


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One message, header and payload together: Asterisk reads the payload with a 5 ms
    poll after the header, so the two must leave in one write."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"AudioSocket payload of {len(payload)} bytes exceeds 65535")
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + payload


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame however TCP split or merged it; None on a clean close between frames."""
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise TruncatedFrame(f"socket closed after {len(exc.partial)} of 3 header "
                                 f"bytes") from None
        return None
    length = int.from_bytes(header[1:], "big")
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise TruncatedFrame(f"socket closed after {len(exc.partial)} of {length} payload "
                             f"bytes of a kind 0x{header[0]:02x} frame") from None
    return Frame(header[0], payload)


def caller_from_uuid(call_uuid: uuid.UUID) -> str:
    """The caller number a dialplan folded into the UUID, or "" for an ordinary UUID.

    Convention (docs/telephony.md): third group ``ca11``, last 16 hex digits the
    number's digits left-padded with ``f``. A random (version 4) UUID never
    has ``ca11`` there, so an ordinary UUID is never misread as a number.
    """
    text = str(call_uuid)
    if text.split("-")[2] != CALLER_MARK:
        return ""
    match = _CALLER_TAIL.fullmatch(call_uuid.hex[-16:])
    return match.group(1) if match else ""


class AudioSocketTransport:
    """One Asterisk channel on one TCP connection, seen as a ``Transport``."""

    def __init__(self, call_uuid: uuid.UUID, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, config: TelephonyConfig,
                 idle_timeout_s: float) -> None:
        self._call_uuid = call_uuid
        self._reader = reader
        self._writer = writer
        self._config = config
        self._idle_timeout_s = idle_timeout_s
        self._inbox = EventInbox()
        self._playout = Playout()
        self._rate: int | None = None
        self._rate_known = asyncio.Event()
        self._rate_warned = False
        self._problems = 0
        self._closing = False
        self._read_task: asyncio.Task[None] | None = None
        self._send_task: asyncio.Task[None] | None = None
        self.info = CallInfo(str(call_uuid), "audiosocket", caller_from_uuid(call_uuid))

    async def start(self) -> None:
        """Read frames; once the first audio frame tells the line rate, begin sending."""
        self._read_task = asyncio.create_task(self._read(), name=f"audiosocket-read-{self}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._rate_known.wait(), FIRST_AUDIO_TIMEOUT_S)
        if self._rate is None:
            self._rate = AUDIO_RATES[KIND_AUDIO]
        self.info = CallInfo(self.info.call_id, "audiosocket", self.info.caller_id, self._rate,
                             {"uuid": str(self._call_uuid)})
        if self._inbox.closed is None:
            self._send_task = asyncio.create_task(self._send(), name=f"audiosocket-send-{self}")

    def __str__(self) -> str:
        return self.info.call_id

    # Transport -----------------------------------------------------------------

    async def receive(self) -> LineEvent:
        return await self._inbox.receive()

    def play(self, samples: np.ndarray) -> None:
        self._playout.put(samples)

    def clear(self) -> None:
        self._playout.clear()

    @property
    def played_s(self) -> float:
        return self._playout.played / self.info.sample_rate

    @property
    def pending_s(self) -> float:
        return self._playout.queued / self.info.sample_rate

    async def transfer(self, target: str, summary: dict[str, Any]) -> bool:
        """Deliver the summary by webhook, let queued words finish, then hand the channel
        back to the dialplan with a hang-up; True if the line was still up to hand back."""
        if self._closing or self._inbox.closed is not None:
            return False
        target = target or self._config.transfer_target
        url = self._config.summary_webhook
        if url:
            await post_summary(url, transfer_payload(self.info, target, summary))
        else:
            log.warning("call %s: transfer to %r without [telephony] summary_webhook: the "
                        "dialplan gets the call back but the agent gets no summary", self, target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TRANSFER_DRAIN_S
        while self._playout.queued and loop.time() < deadline and self._inbox.closed is None:
            await asyncio.sleep(FRAME_S)
        if self._inbox.closed is not None:
            return False
        self._inbox.close("transferred")
        await self.close()
        return True

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._inbox.close("hangup")
        if self._send_task is not None:
            self._send_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._send_task
        with contextlib.suppress(ConnectionError, OSError, TimeoutError, RuntimeError):
            if not self._writer.is_closing():
                self._writer.write(encode_frame(KIND_HANGUP))
                await asyncio.wait_for(self._writer.drain(), 1.0)
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task

    # Reading ------------------------------------------------------------------

    async def _read(self) -> None:
        reason = "hangup"
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(read_frame(self._reader), self._idle_timeout_s)
                except TimeoutError:
                    log.warning("call %s: nothing from Asterisk for %g s; treating the line "
                                "as dead", self, self._idle_timeout_s)
                    reason = "timeout"
                    break
                except TruncatedFrame as exc:
                    log.warning("call %s: truncated AudioSocket frame (%s); call ended", self, exc)
                    reason = "error"
                    break
                except (ConnectionError, OSError) as exc:
                    log.warning("call %s: AudioSocket connection failed: %s", self, exc)
                    reason = "error"
                    break
                if frame is None or frame.kind == KIND_HANGUP:
                    break
                if not self._handle(frame):
                    reason = "error"
                    break
        finally:
            self._inbox.close(reason)
            self._rate_known.set()

    def _handle(self, frame: Frame) -> bool:
        """Turn one frame into caller events; False once the peer is too broken to keep."""
        kind, payload = frame.kind, frame.payload
        if kind in AUDIO_RATES:
            problem = self._audio(kind, payload)
        elif kind == KIND_DTMF:
            digit = payload.decode("ascii", "replace")
            problem = None if digit in DTMF_DIGITS else f"DTMF payload {payload!r} is not a digit"
            if problem is None:
                self._inbox.key(digit)
        elif kind == KIND_ERROR:
            log.warning("call %s: Asterisk reports an AudioSocket error, code %s", self,
                        payload.hex() or "none")
            problem = None
        elif kind == KIND_UUID:
            problem = "a second call-id frame on a call already identified"
        else:
            problem = f"unknown frame kind 0x{kind:02x} ({len(payload)} bytes)"
        if problem is None:
            return True
        self._problems += 1
        log.warning("call %s: dropped a frame: %s", self, problem)
        if self._problems >= MAX_PROBLEMS:
            log.error("call %s: %d malformed AudioSocket frames; hanging up on the peer", self,
                      self._problems)
            return False
        return True

    def _audio(self, kind: int, payload: bytes) -> str | None:
        rate = AUDIO_RATES[kind]
        if len(payload) % 2:
            return f"audio payload of {len(payload)} bytes is not whole 16-bit samples"
        if len(payload) > 2 * MAX_AUDIO_S * rate:
            return (f"audio frame of {len(payload)} bytes at {rate} Hz is longer than "
                    f"{MAX_AUDIO_S * 1000:.0f} ms")
        if self._rate is None:
            self._rate = rate
            self._rate_known.set()
        samples = pcm16_to_float(payload)
        if rate != self._rate:
            if not self._rate_warned:
                log.warning("call %s: audio switched from %d to %d Hz; resampling to %d Hz",
                            self, self._rate, rate, self._rate)
                self._rate_warned = True
            samples = resample(samples, rate, self._rate)
        self._inbox.audio(samples)
        return None

    # Sending ------------------------------------------------------------------

    async def _send(self) -> None:
        rate = self.info.sample_rate
        kind = RATE_KINDS.get(rate, KIND_AUDIO)
        frame_samples = round(rate * FRAME_S)
        clock = FrameClock()
        try:
            while True:
                await clock.wait()
                samples = self._playout.take(frame_samples)
                self._writer.write(encode_frame(kind, float_to_pcm16(samples)))
                await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            # The reader sees the same broken connection (or the hang-up that raced this
            # frame) and ends the call with the right reason.
            log.debug("call %s: sending audio to Asterisk stopped: %s", self, exc)


class AudioSocketGateway:
    """The TCP server Asterisk's ``AudioSocket()`` connects to; one task per call."""

    name = "audiosocket"

    def __init__(self, config: TelephonyConfig, handler: CallHandler, host: str, port: int,
                 idle_timeout_s: float = 10.0, handshake_timeout_s: float = 5.0,
                 stop_timeout_s: float = 30.0) -> None:
        self._config = config
        self._handler = handler
        self._host = host
        self._port = port
        self._idle_timeout_s = idle_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._stop_timeout_s = stop_timeout_s  # for hung-up calls to finish (store the call)
        self._server: asyncio.Server | None = None
        self._calls: dict[asyncio.Task[Any], AudioSocketTransport | None] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self._host, self._port)

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the AudioSocket gateway is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def active_calls(self) -> int:
        return sum(1 for t in self._calls.values() if t is not None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self._calls.values()):
            if transport is not None:
                await transport.close()
        tasks = list(self._calls)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self._stop_timeout_s)
            if late:
                log.warning("%d AudioSocket call(s) still running %g s after hang-up; "
                            "cancelled", len(late), self._stop_timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls[task] = None
        peer = writer.get_extra_info("peername")
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            call_uuid = await self._handshake(reader, peer)
            if call_uuid is None:
                writer.close()
                return
            transport = AudioSocketTransport(call_uuid, reader, writer, self._config,
                                             self._idle_timeout_s)
            self._calls[task] = transport
            await transport.start()
            try:
                await self._handler(transport)
            except Exception:
                log.exception("call %s: the call handler failed; hanging up", transport)
            finally:
                await transport.close()
        except asyncio.CancelledError:
            writer.close()  # stop() gave up waiting: end quietly, the server is going away
        except Exception:
            log.exception("AudioSocket connection from %s failed", peer)
            writer.close()
        finally:
            self._calls.pop(task, None)

    async def _handshake(self, reader: asyncio.StreamReader, peer: Any) -> uuid.UUID | None:
        """The call id frame Asterisk sends first; None (and a log line) for anything else.

        The header is judged before any payload is read, so a stranger (a port
        scanner, an HTTP client) is turned away at once instead of being waited on.
        """
        try:
            header = await asyncio.wait_for(reader.readexactly(HEADER_BYTES),
                                            self._handshake_timeout_s)
            length = int.from_bytes(header[1:], "big")
            if header[0] != KIND_UUID or length != 16:
                log.warning("AudioSocket peer %s opened with kind 0x%02x and length %d; "
                            "expected the 16-byte call id (kind 0x01); closed", peer, header[0],
                            length)
                return None
            payload = await asyncio.wait_for(reader.readexactly(16), self._handshake_timeout_s)
        except TimeoutError:
            log.warning("AudioSocket peer %s sent no call id within %g s; closed", peer,
                        self._handshake_timeout_s)
            return None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                log.warning("AudioSocket peer %s closed in the middle of its call id", peer)
            return None
        except (ConnectionError, OSError) as exc:
            log.warning("AudioSocket peer %s failed before its call id: %s", peer, exc)
            return None
        return uuid.UUID(bytes=payload)
