"""RTP (RFC 3550) for one call: packets, a jitter buffer, and a paced media session.

One 20 ms clock drives each call's media: every tick it sends the next frame
of the play-out queue (silence when the assistant is quiet, so NATs and
PBXs see a live stream) and releases the next frame of the caller's audio
from the jitter buffer. The tick times are computed from the start time, not
accumulated sleeps, so the stream does not drift over a long call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from asr.telephony import g711_decode, g711_encode
from voice.gateways.sip.dtmf import DtmfReceiver, event_payloads
from voice.gateways.sip.sdp import Negotiated
from voice.transport import Playout

log = logging.getLogger(__name__)

FRAME = 160  # samples per 20 ms at 8 kHz
PTIME = 0.020
RTP_VERSION = 2


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """A packet from the wire; ``ValueError`` says why it is not RTP."""
        if len(data) < 12:
            raise ValueError(f"{len(data)} bytes is shorter than an RTP header (12)")
        first, second, sequence, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"RTP version {first >> 6}; expected 2")
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:  # header extension
            if len(data) < offset + 4:
                raise ValueError("RTP header extension is cut off")
            length = struct.unpack("!H", data[offset + 2:offset + 4])[0]
            offset += 4 + 4 * length
        end = len(data)
        if first & 0x20:  # padding: the last byte says how much
            end -= data[-1]
        if offset > end:
            raise ValueError(f"RTP header ({offset} bytes) is longer than the packet ({end})")
        return cls(second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]),
                   bool(second & 0x80))

    def encode(self) -> bytes:
        return struct.pack("!BBHII", RTP_VERSION << 6,
                           (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                           self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                           self.ssrc & 0xFFFFFFFF) + self.payload


class JitterBuffer:
    """Reorders the caller's packets by RTP timestamp and releases one frame per tick.

    Playback starts ``delay_frames`` behind the first packet; lost or late
    audio becomes silence (a late packet is dropped, never played out of
    turn). If the sender's clock runs ahead or it jumps forward in time, the
    buffer skips ahead so the delay stays bounded by ``max_frames``.
    """

    def __init__(self, frame: int = FRAME, delay_frames: int = 3, max_frames: int = 25) -> None:
        self.frame = frame
        self.delay = delay_frames * frame
        self.max_ahead = max_frames * frame
        self.reset()

    def reset(self) -> None:
        self._next: int | None = None  # extended timestamp of the next sample to release
        self._last_ext = 0
        self._pending: dict[int, np.ndarray] = {}
        self.owed = 0  # frames the clock has passed and pop() has not released yet
        self.late = 0
        self.skipped = 0

    def _extend(self, timestamp: int) -> int:
        if self._next is None:
            return timestamp
        delta = (timestamp - self._last_ext + 2**31) % 2**32 - 2**31
        return self._last_ext + delta

    def push(self, timestamp: int, samples: np.ndarray) -> None:
        ext = self._extend(timestamp)
        if self._next is None:
            self._next = ext - self.delay
        self._last_ext = ext
        if ext + len(samples) <= self._next:
            self.late += 1
            return
        if ext - self._next - self.owed * self.frame > self.max_ahead:
            self.skipped += 1
            self._next = ext - self.delay
            self._pending = {ts: s for ts, s in self._pending.items()
                             if ts + len(s) > self._next}
        self._pending[ext] = samples

    def pop(self) -> np.ndarray | None:
        """The next frame: audio where packets arrived, silence where they did not."""
        if self._next is None:
            return None
        start, end = self._next, self._next + self.frame
        self.owed = max(0, self.owed - 1)
        out = np.zeros(self.frame, dtype=np.float32)
        for ts in sorted(self._pending):
            samples = self._pending[ts]
            if ts >= end:
                break
            a, b = max(ts, start), min(ts + len(samples), end)
            if b > a:
                out[a - start:b - start] = samples[a - ts:b - ts]
            if ts + len(samples) <= end:
                del self._pending[ts]
        self._next = end
        return out

    def owe(self, frames: int) -> None:
        """The clock passed ``frames`` ticks without popping (a stall); they are popped
        next, so packets that far ahead are not yet too far. Before any packet there is
        nothing to owe."""
        if self._next is not None:
            self.owed += frames

    @property
    def buffered(self) -> int:
        """Samples received and not yet released."""
        if self._next is None or not self._pending:
            return 0
        last = max(ts + len(s) for ts, s in self._pending.items())
        return max(0, last - self._next)


def parse_port_range(spec: str) -> range | None:
    """``20000-20999`` into a range of even ports; empty or ``0``: any free port."""
    spec = spec.strip()
    if spec in ("", "0"):
        return None
    low, _, high = spec.partition("-")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"telephony.rtp_ports = {spec!r} is not LOW-HIGH (20000-20999)") from None
    if not 0 < lo <= hi < 65536:
        raise ValueError(f"telephony.rtp_ports = {spec!r} is outside 1-65535")
    return range(lo + (lo & 1), hi + 1, 2)


def bind_rtp_socket(host: str, ports: range | None) -> socket.socket:
    """A UDP socket on a free port of ``ports`` (RTP takes even ports; RTCP would be +1)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if ports is None:
        sock.bind((host, 0))
        return sock
    candidates = list(ports)
    offset = random.randrange(len(candidates))
    for port in candidates[offset:] + candidates[:offset]:
        try:
            sock.bind((host, port))
            return sock
        except OSError:
            continue
    sock.close()
    raise OSError(f"no free RTP port in {ports.start}-{ports.stop - 1} on {host}: widen "
                  f"telephony.rtp_ports or end calls")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.session.received(data, addr)
        except Exception:  # one bad packet must never end the call
            log.exception("RTP packet from %s:%s on call %s could not be handled", *addr[:2],
                          self.session.label)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error on call %s: %s", self.session.label, exc)


class RtpSession:
    """The media of one call: receive, jitter-buffer, decode; encode, pace, send; DTMF both ways."""

    def __init__(self, sock: socket.socket, media: Negotiated, playout: Playout,
                 on_audio: Callable[[np.ndarray], None], on_digit: Callable[[str], None],
                 on_timeout: Callable[[], None], timeout_s: float = 30.0,
                 label: str = "", symmetric: bool = False) -> None:
        self.sock = sock
        self.media = media
        self.playout = playout
        self.on_audio = on_audio
        self.on_digit = on_digit
        self.on_timeout = on_timeout
        self.timeout_s = timeout_s
        self.label = label
        # Symmetric RTP (RFC 4961): send to wherever the caller's audio comes from, for
        # callers behind a NAT whose SDP names an address we cannot reach.
        self.symmetric = symmetric
        self._latched = False
        self.jitter = JitterBuffer()
        self.dtmf = DtmfReceiver()
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._remote_ssrc: int | None = None
        self._events: list[tuple[bytes, bool]] = []  # DTMF packets still to send
        self._event_ts = 0
        self._first = True
        self._last_rx = 0.0
        self.received_packets = 0
        self.sent_packets = 0
        self.bad_packets = 0
        self.timed_out = False

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, self._protocol = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), sock=self.sock)
        self._last_rx = loop.time()
        self._task = asyncio.create_task(self._run(), name=f"rtp {self.label}")

    def update_remote(self, media: Negotiated) -> None:
        """A re-INVITE moved the caller's media (hold, a new address)."""
        self.media = media
        self._latched = False
        self._last_rx = asyncio.get_running_loop().time()

    def send_digits(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events for ``digits``; they replace audio while they play."""
        if self.media.dtmf_pt is None:
            raise ValueError(f"call {self.label}: the caller did not offer telephone-event, "
                             f"so digits cannot be sent in RTP")
        for digit in digits:
            self._events += [(b"", False)] if self._events else []  # a frame's gap
            self._events += event_payloads(digit, duration_ms)

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = RtpPacket.parse(data)
        except ValueError as error:
            self.bad_packets += 1
            if self.bad_packets <= 3 or self.bad_packets % 100 == 0:
                log.warning("call %s: dropped %d bytes from %s:%s that are not RTP (%s); "
                            "%d such packets so far", self.label, len(data), *addr[:2], error,
                            self.bad_packets)
            return
        self._last_rx = asyncio.get_running_loop().time()
        self.received_packets += 1
        if packet.payload_type == self.media.dtmf_pt:
            for digit in self.dtmf.feed(packet.timestamp, packet.payload):
                self.on_digit(digit)
            return
        if packet.payload_type != self.media.codec_pt:
            self.bad_packets += 1
            if self.bad_packets <= 3:
                log.warning("call %s: ignoring RTP payload type %d (negotiated %d)",
                            self.label, packet.payload_type, self.media.codec_pt)
            return
        if self.symmetric and not self._latched:
            self._latched = True
            if addr[:2] != (self.media.address, self.media.port):
                log.info("call %s: caller's RTP comes from %s:%s, not %s:%s (NAT); replying "
                         "there", self.label, *addr[:2], self.media.address, self.media.port)
                self.media = replace(self.media, address=addr[0], port=addr[1])
        if packet.ssrc != self._remote_ssrc:
            if self._remote_ssrc is not None:
                log.info("call %s: caller's RTP source changed (SSRC %08x)", self.label,
                         packet.ssrc)
                self.jitter.reset()
            self._remote_ssrc = packet.ssrc
        self.jitter.push(packet.timestamp, g711_decode(packet.payload, self.media.law))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            tick += 1
            delay = start + tick * PTIME - loop.time()
            behind = int(-delay / PTIME) if delay < -0.2 else 0
            if behind:  # the event loop stalled: resume the clock, do not burst out
                tick += behind
                self._ts += behind * FRAME
            # Always yield, even when late, so packets that arrived meanwhile are read
            # before the jitter buffer is asked for the frame they carry.
            await asyncio.sleep(max(0.0, delay))
            self._receive_missed(behind)
            self._tick(loop.time())

    def _receive_missed(self, frames: int) -> None:
        """The caller's audio of ticks a stall skipped: late, but all of it, in order.

        Skipping it instead would leave the jitter buffer that far behind the
        clock, and past its bound it throws the backlog away. The packets that
        piled up meanwhile are read first: the event loop hands a datagram
        transport one packet per turn.
        """
        if not frames or self._protocol is None:
            return
        self.jitter.owe(frames)
        for _ in range(4 * frames):  # bounded: a flood must not hold the loop either
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an ICMP error from our own sending: nothing to read
                continue
            self._protocol.datagram_received(data, addr)
        for _ in range(frames):
            frame = self.jitter.pop()
            if frame is None:
                return
            self.on_audio(frame)

    def _tick(self, now: float) -> None:
        self._send_frame()
        frame = self.jitter.pop()
        if frame is not None:
            self.on_audio(frame)
        silent_by_agreement = self.media.direction in ("sendonly", "inactive")  # on hold
        if now - self._last_rx > self.timeout_s and not self.timed_out \
                and not silent_by_agreement:
            self.timed_out = True
            log.warning("call %s: no RTP from the caller for %.0f s; ending the call",
                        self.label, now - self._last_rx)
            self.on_timeout()

    def _send_frame(self) -> None:
        media = self.media
        if self._events:
            payload, marker = self._events.pop(0)
            if payload:
                if marker:
                    self._event_ts = self._ts
                self._send(media.dtmf_pt or 0, self._event_ts, payload, marker)
            self._ts += FRAME
            return
        samples = self.playout.take(FRAME)
        if media.direction in ("sendrecv", "sendonly"):
            self._send(media.codec_pt, self._ts, g711_encode(samples, media.law), self._first)
            self._first = False
        self._ts += FRAME

    def _send(self, pt: int, timestamp: int, payload: bytes, marker: bool) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        packet = RtpPacket(pt, self._seq, timestamp, self._ssrc, payload, marker)
        self._seq = (self._seq + 1) & 0xFFFF
        self._transport.sendto(packet.encode(), (self.media.address, self.media.port))
        self.sent_packets += 1

    def flush_digits(self) -> None:
        for digit in self.dtmf.flush():
            self.on_digit(digit)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.flush_digits()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        else:
            self.sock.close()
