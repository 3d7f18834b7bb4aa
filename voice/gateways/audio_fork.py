"""Raw-PCM audio forks: jambonz ``listen``, FreeSWITCH ``mod_audio_fork`` and ``mod_audio_stream``.

The peer opens with one JSON text frame of metadata, then streams binary
frames of signed 16-bit little-endian PCM (8 kHz unless the metadata says
otherwise). We answer with binary PCM paced at real time; the peer plays
what arrives, so audio counts as heard once sent. Barge-in sends
``{"type": "killAudio"}``, which makes the peer drop what it has buffered.
DTMF arrives as JSON text frames when the peer passes it on (jambonz
``passDtmf``); the few shapes in use are all accepted.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from voice.gateways.line import FRAME_S, float_to_pcm16, pcm16_to_float
from voice.gateways.media_stream import MediaStreamLine
from voice.transport import DTMF_DIGITS, CallInfo
from voicedesk.config import TelephonyConfig

log = logging.getLogger(__name__)

DEFAULT_RATE = 8_000
RATES = (8_000, 16_000, 24_000, 32_000, 44_100, 48_000)
RATE_KEYS = ("sampleRate", "sample_rate", "samplingRate", "rate")
CALL_ID_KEYS = ("callSid", "call_sid", "uuid", "callId", "call_id", "streamSid")
CALLER_KEYS = ("from", "From", "caller_id", "callerId", "caller", "ani")


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def call_info(metadata: dict[str, Any]) -> CallInfo:
    """CallInfo from the opening metadata; ValueError for a rate we cannot use."""
    nested = metadata.get("metadata") if isinstance(metadata.get("metadata"), dict) else {}
    merged = {**nested, **metadata}
    raw_rate = _first(merged, RATE_KEYS) or DEFAULT_RATE
    try:
        rate = int(raw_rate)
    except (TypeError, ValueError):
        raise ValueError(f"sample rate {raw_rate!r} is not a number") from None
    if rate not in RATES:
        raise ValueError(f"sample rate {rate} Hz is not one of {', '.join(map(str, RATES))}")
    call_id = str(_first(merged, CALL_ID_KEYS) or uuid.uuid4())
    caller = str(_first(merged, CALLER_KEYS) or "")
    return CallInfo(call_id, "websocket", caller, rate,
                    {"protocol": "audio-fork", "metadata": metadata})


def dtmf_digit(message: dict[str, Any]) -> str | None:
    """The digit of a DTMF message, or None if the message is not about DTMF.

    jambonz: ``{"event": "dtmf", "dtmf": "5", "duration": 160}``; others send
    ``{"type": "dtmf", "digit": "5"}`` or nest ``{"dtmf": {"digit": "5"}}``.
    """
    if "dtmf" not in (message.get("event"), message.get("type")):
        return None
    value = message.get("dtmf", message.get("digit"))
    if isinstance(value, dict):
        value = value.get("digit")
    return str(value) if value is not None else ""


class AudioForkLine(MediaStreamLine):
    protocol = "audio-fork"

    def __init__(self, ws: Any, info: CallInfo, config: TelephonyConfig,
                 idle_timeout_s: float) -> None:
        super().__init__(ws, info, config, idle_timeout_s)
        self._odd = b""  # a byte of a sample split across two binary frames
        self._frame_samples = round(info.sample_rate * FRAME_S)
        self._sent_since_kill = False  # whether the peer may still hold audio of ours

    def on_binary(self, data: bytes) -> None:
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        self._inbox.audio(pcm16_to_float(data[:whole]))

    def on_json(self, message: dict[str, Any]) -> bool:
        digit = dtmf_digit(message)
        if digit is not None:
            if digit in DTMF_DIGITS and digit:
                self._inbox.key(digit)
            else:
                self.problem(f"DTMF message without a valid digit: {message!r:.80}")
        elif message.get("type") == "disconnect" or message.get("event") == "stop":
            return False
        else:
            log.debug("call %s: ignored %s message %r", self, self.protocol, message)
        return True

    async def tick(self) -> None:
        if self._playout.queued:
            samples = self._playout.take(min(self._frame_samples, self._playout.queued),
                                         pad=False)
            await self._ws.send(float_to_pcm16(samples))
            self._sent_since_kill = True

    async def flush_peer(self) -> None:
        if self._sent_since_kill:
            self._sent_since_kill = False
            await self.send_json({"type": "killAudio"})

    async def before_transfer(self, target: str) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await self.send_json({"type": "disconnect"})
