"""RFC 4733 telephone-events: keypad digits carried in RTP, received and sent.

One key press is a run of packets that share an RTP timestamp: the duration
grows every 50 ms or so, and the last packet (E bit set) is sent three times
because RTP has no retransmission. The receiver reports each press once, when
its end arrives; a press whose end packets were all lost is reported when the
next press begins or when the call ends, so no digit of a PIN goes missing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EVENT_DIGITS = "0123456789*#ABCD"  # event codes 0-15 (RFC 4733 3.2)


@dataclass(frozen=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int  # dBm0 below zero, 0-63
    duration: int  # in RTP timestamp units (samples at 8 kHz)

    @property
    def digit(self) -> str | None:
        return EVENT_DIGITS[self.event] if self.event < len(EVENT_DIGITS) else None

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError(f"telephone-event payload of {len(payload)} bytes; expected 4")
        event, flags, duration = struct.unpack("!BBH", payload[:4])
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def encode(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F),
                           self.duration & 0xFFFF)


class DtmfReceiver:
    """Turns telephone-event packets into digits, each press once."""

    def __init__(self) -> None:
        self._current: int | None = None  # RTP timestamp of the press in progress
        self._current_digit: str | None = None
        self._reported: set[int] = set()  # timestamps already reported (end retransmissions)

    def feed(self, timestamp: int, payload: bytes) -> list[str]:
        """Digits completed by this packet (usually none, sometimes one, rarely two)."""
        event = TelephoneEvent.parse(payload)
        digit = event.digit
        out: list[str] = []
        if timestamp in self._reported or digit is None:
            return out
        if self._current is not None and self._current != timestamp:
            out += self.flush()  # the previous press lost its end packets
        if event.end:
            self._reported.add(timestamp)
            if len(self._reported) > 64:
                self._reported = {timestamp}
            self._current = None
            self._current_digit = None
            out.append(digit)
        else:
            self._current, self._current_digit = timestamp, digit
        return out

    def flush(self) -> list[str]:
        """The press in progress, if any: called when a new press starts or the call ends."""
        if self._current is None or self._current_digit is None:
            return []
        self._reported.add(self._current)
        digit = self._current_digit
        self._current = self._current_digit = None
        return [digit]


def event_payloads(digit: str, duration_ms: int = 100, frame: int = 160,
                   volume: int = 10) -> list[tuple[bytes, bool]]:
    """The payloads (and marker bits) of one key press, one per 20 ms packet, ends x3."""
    if digit.upper() not in EVENT_DIGITS:
        raise ValueError(f"{digit!r} is not a DTMF digit (0-9 * # A-D)")
    code = EVENT_DIGITS.index(digit.upper())
    steps = max(1, duration_ms * 8 // frame)
    out = [(TelephoneEvent(code, False, volume, frame * (i + 1)).encode(), i == 0)
           for i in range(steps)]
    end = TelephoneEvent(code, True, volume, frame * steps).encode()
    return out + [(end, False)] * 3
