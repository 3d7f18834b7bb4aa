"""Emulated phone-system peers for the gateway tests, following docs on each protocol.

Asterisk, Twilio, jambonz and FreeSWITCH cannot run on a test machine, so
these speak their side of AudioSocket and of WebSocket media streams exactly
as the protocol documents describe: an AudioSocket client that sends its UUID
first and 320-byte signed-linear frames at a 20 ms pace, and a Twilio Media
Streams client that sends base64 mu-law and echoes each ``mark`` only once the
audio queued before it would have finished playing at real time. Also the
test call handler: it plays a reply, records what the caller sent, and reacts
to keys (``*`` clears, ``#`` hangs up, ``0`` transfers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr.audio import load_audio, to_int16
from asr.telephony import g711_decode, g711_encode
from voice.transport import CallerAudio, CallInfo, KeyPress, LineClosed, Transport

FRAME = 160  # samples in 20 ms at 8 kHz
PEER_TIMEOUT_S = 20.0  # no emulated peer outlives this


def run(coro: Any, timeout: float = PEER_TIMEOUT_S) -> Any:
    """Run one test scenario on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def speech(text: str, folder: Path, rate: int = 8000) -> np.ndarray:
    """Real speech from espeak-ng, at ``rate``: what a caller or the assistant says."""
    path = folder / f"speech-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True,
                   timeout=30, capture_output=True)
    return load_audio(path, rate=rate).samples


def heard_pcm(samples: np.ndarray) -> np.ndarray:
    """Float samples a gateway decoded from 16-bit PCM (x / 32768), back to exact int16."""
    return np.round(samples * 32768.0).astype(np.int16)


def first_sound(pcm: np.ndarray, floor: int = 0) -> int:
    """Index of the first sample louder than ``floor`` (len if none)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > floor)
    return int(loud[0]) if len(loud) else len(pcm)


# --- the call handler under test -------------------------------------------------------------


@dataclass
class CallRecord:
    info: CallInfo
    audio: list[np.ndarray] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    closed: str = ""
    played_s: float = 0.0
    played_at_clear: float | None = None
    transferred: bool | None = None
    closed_again: bool = False  # receive() after the close says LineClosed again

    @property
    def samples(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32)


class RecordingHandler:
    """Plays ``reply`` when the call starts, records everything, obeys keys.

    ``*`` clears the reply (barge-in), ``#`` hangs up from our side, ``0``
    transfers to ``agents`` with a small summary.
    """

    def __init__(self, reply: np.ndarray | None = None) -> None:
        self.reply = reply
        self.calls: list[CallRecord] = []
        self.started = asyncio.Event()
        self.transports: list[Transport] = []

    async def __call__(self, transport: Transport) -> None:
        record = CallRecord(transport.info)
        self.calls.append(record)
        self.transports.append(transport)
        self.started.set()
        if self.reply is not None:
            transport.play(self.reply)
        while True:
            event = await transport.receive()
            if isinstance(event, CallerAudio):
                record.audio.append(event.samples)
            elif isinstance(event, KeyPress):
                record.keys.append(event.digit)
                if event.digit == "*":
                    record.played_at_clear = transport.played_s
                    transport.clear()
                elif event.digit == "#":
                    await transport.close()
                elif event.digit == "0":
                    record.transferred = await transport.transfer(
                        "sip:agents@pbx.example", {"text": "caller wants an agent"})
            elif isinstance(event, LineClosed):
                record.closed = event.reason
                break
        record.closed_again = isinstance(await transport.receive(), LineClosed)
        record.played_s = transport.played_s


# --- Asterisk AudioSocket ---------------------------------------------------------------------


class EmulatedAsterisk:
    """The Asterisk side of one AudioSocket call: ``AudioSocket(${UUID},host:port)``."""

    def __init__(self, host: str, port: int, call_uuid: uuid.UUID | None = None) -> None:
        self.host, self.port = host, port
        self.uuid = call_uuid or uuid.uuid4()
        self.received: list[bytes] = []  # audio payloads from the server
        self.audio_kinds: set[int] = set()  # which audio kinds (0x10-0x18) they came as
        self.arrivals: list[float] = []  # monotonic time of each audio frame
        self.other_kinds: list[int] = []  # anything we were sent that is not audio or hang-up
        self.hung_up = asyncio.Event()  # the server sent kind 0x00 or closed
        self.stopped = False  # we hung up: stream() sends nothing more
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._listen: asyncio.Task[None] | None = None

    async def connect(self, send_uuid: bool = True) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), 2.0)
        self._writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                         socket.TCP_NODELAY, 1)
        if send_uuid:
            self.send_raw(bytes([0x01, 0, 16]) + self.uuid.bytes)
        self._listen = asyncio.create_task(self._read())

    def send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def stream(self, samples: np.ndarray, dtmf: dict[int, str] | None = None,
                     after_s: float = 0.0, kind: int = 0x10) -> None:
        """Send 20 ms frames (320 bytes at 8 kHz) on an absolute schedule, DTMF before frame n.

        ``after_s`` more seconds of silent frames follow the audio, as a live
        channel keeps streaming while nobody speaks.
        """
        size = {0x10: 160, 0x12: 320}[kind]
        pcm = to_int16(samples)
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % size, np.int16)])
        frames = int(after_s / 0.02) + len(pcm) // size
        start = time.monotonic()
        for n in range(frames):
            if self.hung_up.is_set() or self.stopped:
                return
            if dtmf and n in dtmf:
                self.send_raw(bytes([0x03, 0, 1]) + dtmf[n].encode())
            chunk = pcm[n * size:(n + 1) * size]
            if len(chunk) < size:
                chunk = np.zeros(size, np.int16)
            self.send_raw(bytes([kind]) + (2 * size).to_bytes(2, "big")
                          + chunk.astype("<i2").tobytes())
            assert self._writer is not None
            try:
                await self._writer.drain()
            except ConnectionError:
                return
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def hang_up(self) -> None:
        """The caller hangs up: a hang-up frame, and no more audio after it."""
        self.stopped = True
        self.send_raw(bytes([0x00, 0, 0]))

    def half_close(self) -> None:
        """Send FIN (no more data from us) and keep reading: a peer that stops mid-frame."""
        assert self._writer is not None
        self._writer.write_eof()

    def vanish(self) -> None:
        """Drop the connection without a hang-up frame (a crashed PBX, a cut cable)."""
        assert self._writer is not None
        self._writer.transport.abort()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        if self._listen is not None:
            self._listen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.received), dtype="<i2")

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                header = await self._reader.readexactly(3)
                payload = await self._reader.readexactly(int.from_bytes(header[1:], "big"))
                if header[0] == 0x00:
                    break
                if 0x10 <= header[0] <= 0x18:
                    self.audio_kinds.add(header[0])
                    self.received.append(payload)
                    self.arrivals.append(time.monotonic())
                else:
                    self.other_kinds.append(header[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.hung_up.set()


# --- Twilio Media Streams ---------------------------------------------------------------------


class EmulatedTwilio:
    """Twilio's side of ``<Connect><Stream>``: JSON events, base64 mu-law, marks, clear.

    Audio it receives goes into a play-out buffer drained at real time; a mark
    is echoed when everything queued before it has been played; ``clear``
    empties the buffer and echoes the pending marks, as Twilio does.
    """

    def __init__(self, url: str, call_sid: str = "CA0001", stream_sid: str = "MZ0001",
                 parameters: dict[str, str] | None = None) -> None:
        self.url = url
        self.call_sid, self.stream_sid = call_sid, stream_sid
        self.parameters = parameters or {}
        self.heard: list[np.ndarray] = []  # what the caller heard, in 20 ms steps
        self.marks_echoed: list[str] = []
        self.clears = 0
        self.paused = False  # a stalled player: nothing plays, no mark comes back
        self.most_buffered = 0  # the most samples ever waiting in the play-out buffer
        self.unexpected: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.stopped = False  # the call ended here: stream() sends nothing more
        self._queue: list[tuple[str, Any]] = []  # ("audio", samples) | ("mark", name)
        self._ws: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._chunk = 0

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        self._ws = await asyncio.wait_for(connect(self.url, open_timeout=2.0), 3.0)
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send({"event": "start", "sequenceNumber": "1", "streamSid": self.stream_sid,
                         "start": {"accountSid": "AC0001", "streamSid": self.stream_sid,
                                   "callSid": self.call_sid, "tracks": ["inbound"],
                                   "customParameters": self.parameters,
                                   "mediaFormat": {"encoding": "audio/x-mulaw",
                                                   "sampleRate": 8000, "channels": 1}}})
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._play())]

    async def send(self, message: dict[str, Any] | str) -> None:
        await self._ws.send(message if isinstance(message, str) else json.dumps(message))

    async def stream(self, samples: np.ndarray, dtmf: dict[int, str] | None = None,
                     after_s: float = 0.0) -> None:
        """Caller audio as 20 ms mu-law media events on an absolute 20 ms schedule."""
        payload = g711_encode(samples, "ulaw")
        frames = int(after_s / 0.02) + -(-len(payload) // FRAME)
        start = time.monotonic()
        from websockets.exceptions import ConnectionClosed

        for n in range(frames):
            if self.closed.is_set() or self.stopped:
                return
            try:
                if dtmf and n in dtmf:
                    await self.send({"event": "dtmf", "streamSid": self.stream_sid,
                                     "dtmf": {"track": "inbound_track", "digit": dtmf[n]}})
                chunk = payload[n * FRAME:(n + 1) * FRAME] or b"\xff" * FRAME
                self._chunk += 1
                await self.send({"event": "media", "streamSid": self.stream_sid,
                                 "media": {"track": "inbound", "chunk": str(self._chunk),
                                           "timestamp": str(n * 20),
                                           "payload": base64.b64encode(chunk).decode()}})
            except ConnectionClosed:
                return  # the server ended the stream (a transfer, a hang-up): so do we
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        """The caller hung up: Twilio sends ``stop`` and no more media."""
        self.stopped = True
        await self.send({"event": "stop", "streamSid": self.stream_sid,
                         "stop": {"accountSid": "AC0001", "callSid": self.call_sid}})

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def vanish(self) -> None:
        self._ws.transport.abort()

    @property
    def heard_samples(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, np.float32)

    async def _read(self) -> None:
        try:
            async for text in self._ws:
                message = json.loads(text)
                if message.get("streamSid") != self.stream_sid:
                    self.unexpected.append(message)
                elif message["event"] == "media":
                    audio = g711_decode(base64.b64decode(message["media"]["payload"]), "ulaw")
                    self._queue.append(("audio", audio))
                    buffered = sum(len(v) for k, v in self._queue if k == "audio")
                    self.most_buffered = max(self.most_buffered, buffered)
                elif message["event"] == "mark":
                    self._queue.append(("mark", message["mark"]["name"]))
                elif message["event"] == "clear":
                    self.clears += 1
                    pending = [v for k, v in self._queue if k == "mark"]
                    self._queue.clear()
                    for name in pending:
                        await self._echo(name)
                else:
                    self.unexpected.append(message)
        except Exception:  # noqa: BLE001 - the peer records, the test asserts
            pass
        finally:
            self.closed.set()

    async def _echo(self, name: str) -> None:
        self.marks_echoed.append(name)
        with contextlib.suppress(Exception):
            await self.send({"event": "mark", "streamSid": self.stream_sid,
                             "mark": {"name": name}})

    async def _play(self) -> None:
        """Drain the buffer at real time, 160 samples per 20 ms, echoing marks in order."""
        start = time.monotonic()
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
            if self.paused:
                continue
            need = FRAME
            while self._queue and (need or self._queue[0][0] == "mark"):
                kind, value = self._queue[0]
                if kind == "mark":
                    self._queue.pop(0)
                    await self._echo(value)
                    continue
                part = value[:need]
                self.heard.append(part)
                need -= len(part)
                if len(part) == len(value):
                    self._queue.pop(0)
                else:
                    self._queue[0] = ("audio", value[len(part):])


# --- jambonz listen / FreeSWITCH audio fork ---------------------------------------------------


class EmulatedAudioFork:
    """A raw-PCM audio fork: one JSON metadata text frame, then binary 16-bit PCM frames."""

    def __init__(self, url: str, metadata: dict[str, Any]) -> None:
        self.url = url
        self.metadata = metadata
        self.rate = int(metadata.get("sampleRate", 8000))
        self.received: list[bytes] = []
        self.arrivals: list[float] = []
        self.commands: list[dict[str, Any]] = []  # JSON text frames from the server
        self.closed = asyncio.Event()
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, opening: str | bytes | None = None) -> None:
        from websockets.asyncio.client import connect

        self._ws = await asyncio.wait_for(connect(self.url, open_timeout=2.0), 3.0)
        await self._ws.send(json.dumps(self.metadata) if opening is None else opening)
        self._task = asyncio.create_task(self._read())

    async def send(self, message: str | bytes) -> None:
        await self._ws.send(message)

    async def stream(self, samples: np.ndarray, dtmf: dict[int, str] | None = None,
                     after_s: float = 0.0) -> None:
        size = self.rate // 50
        pcm = to_int16(samples)
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % size, np.int16)])
        frames = int(after_s / 0.02) + len(pcm) // size
        start = time.monotonic()
        for n in range(frames):
            if self.closed.is_set():
                return
            if dtmf and n in dtmf:
                await self.send(json.dumps({"event": "dtmf", "dtmf": dtmf[n], "duration": 160}))
            chunk = pcm[n * size:(n + 1) * size]
            if len(chunk) < size:
                chunk = np.zeros(size, np.int16)
            try:
                await self.send(chunk.astype("<i2").tobytes())
            except Exception:  # noqa: BLE001 - the server hung up: the test checks why
                return
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.received), dtype="<i2")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def vanish(self) -> None:
        self._ws.transport.abort()

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    self.received.append(message)
                    self.arrivals.append(time.monotonic())
                else:
                    self.commands.append(json.loads(message))
        except Exception:  # noqa: BLE001 - the peer records, the test asserts
            pass
        finally:
            self.closed.set()
