"""One WebSocket server for media streams; the first message says which protocol a call speaks.

Twilio Media Streams open with a JSON ``connected`` (then ``start``) event;
raw-PCM audio forks (jambonz ``listen``, FreeSWITCH ``mod_audio_fork`` and
``mod_audio_stream``) open with a JSON metadata object of their own. So one
port serves both, and an operator points either kind of peer at the same URL.
A connection that opens with anything else is closed with a logged reason.
The ``websockets`` import stays inside, so the rest of voicedesk loads
without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from voice.gateways.base import CallHandler
from voice.gateways.media_stream import MediaStreamLine
from voicedesk.config import TelephonyConfig

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024  # a second of 48 kHz PCM is 96 KiB; more is not a media frame
TWILIO_OPENING = ("connected", "start")


class WebSocketGateway:
    """Hosts Twilio and raw-PCM media streams; one connection is one call."""

    name = "websocket"

    def __init__(self, config: TelephonyConfig, handler: CallHandler, host: str, port: int,
                 idle_timeout_s: float = 15.0, handshake_timeout_s: float = 10.0,
                 stop_timeout_s: float = 30.0) -> None:
        self._config = config
        self._handler = handler
        self._host = host
        self._port = port
        self._idle_timeout_s = idle_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._stop_timeout_s = stop_timeout_s  # for hung-up calls to finish (store the call)
        self._server: Any = None
        self._lines: set[MediaStreamLine] = set()

    async def start(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(self._connection, self._host, self._port,
                                   max_size=MAX_MESSAGE_BYTES, compression=None)

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the WebSocket gateway is not started")
        host, port = list(self._server.sockets)[0].getsockname()[:2]
        return host, port

    @property
    def active_calls(self) -> int:
        return len(self._lines)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.server.close()  # stop accepting first; then hang up calls gracefully
        await asyncio.gather(*(line.close() for line in list(self._lines)),
                             return_exceptions=True)
        self._server.close()  # and close whatever had not started a call yet
        try:
            await asyncio.wait_for(self._server.wait_closed(), self._stop_timeout_s)
        except TimeoutError:
            log.warning("WebSocket calls still running %g s after hang-up; cancelled",
                        self._stop_timeout_s)
        self._server = None

    async def _connection(self, ws: Any) -> None:
        peer = ws.remote_address
        try:
            line = await self._open(ws, peer)
        except asyncio.CancelledError:
            return
        if line is None:
            with contextlib.suppress(Exception):
                await ws.close(1008, "expected a Twilio start or a JSON metadata message")
            return
        self._lines.add(line)
        line.start()
        try:
            await self._handler(line)
        except asyncio.CancelledError:
            pass  # the server is going away
        except Exception:
            log.exception("call %s: the call handler failed; hanging up", line)
        finally:
            await line.close()
            self._lines.discard(line)

    async def _open(self, ws: Any, peer: Any) -> MediaStreamLine | None:
        """Read the opening message(s) and build the call's line, or None with a log line."""
        from websockets.exceptions import ConnectionClosed

        try:
            first = await asyncio.wait_for(ws.recv(), self._handshake_timeout_s)
            if isinstance(first, bytes):
                log.warning("WebSocket peer %s sent %d bytes of audio before any metadata; "
                            "expected a Twilio 'connected' event or a JSON metadata text "
                            "frame first; closed", peer, len(first))
                return None
            try:
                opening = json.loads(first)
            except ValueError:
                log.warning("WebSocket peer %s opened with invalid JSON %r; closed", peer,
                            first[:80])
                return None
            if not isinstance(opening, dict):
                log.warning("WebSocket peer %s opened with JSON %r, not an object; closed",
                            peer, first[:80])
                return None
            if opening.get("event") in TWILIO_OPENING:
                return await self._twilio(ws, peer, opening)
            return self._audio_fork(ws, peer, opening)
        except TimeoutError:
            log.warning("WebSocket peer %s sent nothing to start a call within %g s; closed",
                        peer, self._handshake_timeout_s)
        except ConnectionClosed:
            log.info("WebSocket peer %s left before starting a call", peer)
        return None

    async def _twilio(self, ws: Any, peer: Any, opening: dict[str, Any]) -> MediaStreamLine | None:
        from voice.gateways.twilio_stream import TwilioLine, call_info

        start = opening
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._handshake_timeout_s
        while start.get("event") != "start":  # 'connected' comes first
            text = await asyncio.wait_for(ws.recv(), max(0.0, deadline - loop.time()))
            try:
                start = json.loads(text)
            except (TypeError, ValueError):
                log.warning("Twilio stream from %s: ignored a non-JSON message before 'start'",
                            peer)
                start = {}
            if not isinstance(start, dict):
                start = {}
        try:
            info = call_info(start)
        except (TypeError, ValueError) as exc:
            log.warning("Twilio stream from %s: unusable start event: %s; closed", peer, exc)
            return None
        return TwilioLine(ws, info, self._config, self._idle_timeout_s)

    def _audio_fork(self, ws: Any, peer: Any, metadata: dict[str, Any]) -> MediaStreamLine | None:
        from voice.gateways.audio_fork import AudioForkLine, call_info

        try:
            info = call_info(metadata)
        except ValueError as exc:
            log.warning("audio fork from %s: unusable metadata %s: %s; closed", peer,
                        json.dumps(metadata)[:120], exc)
            return None
        return AudioForkLine(ws, info, self._config, self._idle_timeout_s)
