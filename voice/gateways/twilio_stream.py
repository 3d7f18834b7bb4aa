"""Twilio Media Streams (``<Connect><Stream>``): JSON events with base64 mu-law at 8 kHz.

Twilio buffers the audio we send and plays it at its own pace, so "sent" is
not "heard". After each group of 20 ms chunks we send a ``mark``; Twilio
echoes it when the audio before it has played, and only then does
``played_s`` advance. We keep at most ``AHEAD_S`` un-echoed audio at Twilio:
enough to ride out network jitter, little enough that ``clear`` (barge-in)
throws away only a moment. Twilio also echoes marks that a ``clear`` flushed;
those are recognised and not counted as heard.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
from collections import OrderedDict
from typing import Any

from asr.telephony import g711_decode, g711_encode
from voice.gateways.media_stream import MediaStreamLine
from voice.transport import DTMF_DIGITS, CallInfo
from voicedesk.config import TelephonyConfig

log = logging.getLogger(__name__)

RATE = 8_000
CHUNK = 160  # samples in one 20 ms media message
MARK_EVERY = 5 * CHUNK  # a mark after each 100 ms: the grain of what we know was heard
AHEAD_S = 0.4  # most audio sent to Twilio and not yet echoed as played
CALLER_PARAMETERS = ("From", "from", "caller_id", "callerId", "caller")


def caller_number(parameters: dict[str, Any]) -> str:
    """The caller number from ``<Parameter>`` values the TwiML put on the stream."""
    for name in CALLER_PARAMETERS:
        value = parameters.get(name)
        if value:
            return str(value)
    return ""


def call_info(start: dict[str, Any]) -> CallInfo:
    """CallInfo from the ``start`` event; ValueError says what is missing."""
    body = start.get("start")
    stream_sid = start.get("streamSid") or (body or {}).get("streamSid")
    if not isinstance(body, dict) or not stream_sid:
        raise ValueError("the start event has no 'start' object or no streamSid")
    media = body.get("mediaFormat") or {}
    encoding = media.get("encoding", "audio/x-mulaw")
    if encoding != "audio/x-mulaw" or int(media.get("sampleRate", RATE)) != RATE:
        raise ValueError(f"media format {media} is not audio/x-mulaw at 8000 Hz")
    parameters = body.get("customParameters") or {}
    if not isinstance(parameters, dict):
        parameters = {}
    return CallInfo(str(stream_sid), "websocket", caller_number(parameters), RATE,
                    {"protocol": "twilio", "call_sid": body.get("callSid", ""),
                     "account_sid": body.get("accountSid", ""),
                     "custom_parameters": parameters})


class TwilioLine(MediaStreamLine):
    protocol = "twilio"

    def __init__(self, ws: Any, info: CallInfo, config: TelephonyConfig,
                 idle_timeout_s: float) -> None:
        super().__init__(ws, info, config, idle_timeout_s)
        self._marks: OrderedDict[str, int] = OrderedDict()  # sent, not echoed: name -> samples
        self._flushed: set[str] = set()  # marks whose audio a clear threw away
        self._names = itertools.count(1)
        self._at_twilio = 0  # samples sent and not yet echoed
        self._heard = 0

    @property
    def heard_samples(self) -> int:
        return self._heard

    @property
    def unheard_samples(self) -> int:
        return self._playout.queued + self._at_twilio

    def on_json(self, message: dict[str, Any]) -> bool:
        event = message.get("event")
        if event == "media":
            self._media(message.get("media"))
        elif event == "dtmf":
            digit = str((message.get("dtmf") or {}).get("digit", ""))
            if digit in DTMF_DIGITS and digit:
                self._inbox.key(digit)
            else:
                self.problem(f"dtmf event without a valid digit: {message.get('dtmf')!r}")
        elif event == "mark":
            self._echoed(str((message.get("mark") or {}).get("name", "")))
        elif event == "stop":
            return False
        elif event in ("connected", "start"):
            self.problem(f"a second {event!r} event on stream {self}")
        else:
            self.problem(f"unknown event {event!r}")
        return True

    def _media(self, media: Any) -> None:
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            self.problem("media event without a payload string")
            return
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return  # a both_tracks stream also echoes our own audio: not the caller
        try:
            payload = base64.b64decode(media["payload"], validate=True)
        except (binascii.Error, ValueError):
            self.problem(f"media payload is not base64 ({media['payload'][:40]!r})")
            return
        self._inbox.audio(g711_decode(payload, "ulaw"))

    def _echoed(self, name: str) -> None:
        samples = self._marks.pop(name, None)
        if samples is None:
            self._flushed.discard(name)
            return
        self._at_twilio -= samples
        if name in self._flushed:
            self._flushed.discard(name)
        else:
            self._heard += samples

    async def tick(self) -> None:
        ahead = int(AHEAD_S * RATE)
        while self._playout.queued and self._at_twilio < ahead:
            group = self._playout.take(min(MARK_EVERY, self._playout.queued), pad=False)
            name = f"vd{next(self._names)}"
            self._marks[name] = len(group)
            self._at_twilio += len(group)
            payload = g711_encode(group, "ulaw")
            for at in range(0, len(payload), CHUNK):
                chunk = base64.b64encode(payload[at:at + CHUNK]).decode()
                await self.send_json({"event": "media", "streamSid": self.info.call_id,
                                      "media": {"payload": chunk}})
            await self.send_json({"event": "mark", "streamSid": self.info.call_id,
                                  "mark": {"name": name}})

    async def flush_peer(self) -> None:
        if not self._marks:
            return
        self._flushed.update(self._marks)
        for name in self._marks:
            self._marks[name] = 0
        self._at_twilio = 0
        await self.send_json({"event": "clear", "streamSid": self.info.call_id})
