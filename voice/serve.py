"""`voicedesk serve`: every enabled gateway in one process, every call through one call service.

The models load once (``CallService.start``) and are shared by all calls,
whichever phone system carries them: SIP/RTP, Asterisk AudioSocket, Twilio
Media Streams or a raw-PCM audio fork. A gateway is enabled by its
``--sip/--audiosocket/--websocket HOST:PORT`` flag or by the same key in
``[telephony]``; the flag wins. The process runs until SIGINT or SIGTERM,
then stops accepting calls, hangs up those in progress and releases every
socket before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from voice.gateways.base import CallHandler, Gateway
from voice.transport import Transport
from voicedesk.config import Config, TelephonyConfig
from voicedesk.errors import VoicedeskError

log = logging.getLogger("voicedesk.serve")

GATEWAYS = ("sip", "audiosocket", "websocket")
STOP_TIMEOUT_S = 45.0  # gateways give hung-up calls 30 s to finish; this bounds the rest


def parse_address(spec: str, where: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6, ``:PORT`` for every interface) to a pair."""
    host, sep, port = spec.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise VoicedeskError(f"{where} = {spec!r} is not HOST:PORT (for example "
                             f"0.0.0.0:9092, or 127.0.0.1:0 for any free port)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def enabled_endpoints(telephony: TelephonyConfig,
                      args: argparse.Namespace | None = None) -> dict[str, tuple[str, int]]:
    """The gateways to run and where: a command-line flag overrides ``[telephony]``."""
    out: dict[str, tuple[str, int]] = {}
    for name in GATEWAYS:
        flag = getattr(args, name, None) if args is not None else None
        spec = flag if flag is not None else getattr(telephony, name)
        if spec:
            where = f"--{name}" if flag is not None else f"[telephony] {name}"
            out[name] = parse_address(spec, where)
    return out


def build_gateway(name: str, telephony: TelephonyConfig, handler: CallHandler,
                  host: str, port: int) -> Gateway:
    """One gateway, its module imported only when it is enabled."""
    if name == "sip":
        from voice.gateways.sip.gateway import SipGateway

        return SipGateway(telephony, handler, host, port)
    if name == "audiosocket":
        from voice.gateways.audiosocket import AudioSocketGateway

        return AudioSocketGateway(telephony, handler, host, port)
    if name == "websocket":
        try:
            import websockets  # noqa: F401 - checked here so the error names the fix
        except ImportError:
            raise VoicedeskError("the WebSocket gateway needs the 'websockets' package: "
                                 "pip install 'websockets>=13'") from None
        from voice.gateways.websocket import WebSocketGateway

        return WebSocketGateway(telephony, handler, host, port)
    raise ValueError(f"no gateway named {name!r}; known: {', '.join(GATEWAYS)}")


class CallLog:
    """The one handler every gateway calls: logs each call's start and end around the loop.

    A call loop that fails is logged here with the call it broke, and the
    gateway hangs that line up; other calls carry on.
    """

    def __init__(self, handler: CallHandler) -> None:
        self._handler = handler
        self.active = 0
        self.total = 0

    async def __call__(self, transport: Transport) -> None:
        info = transport.info
        self.active += 1
        self.total += 1
        started = time.monotonic()
        log.info("call %s on %s from %s: started (%d active)", info.call_id, info.channel,
                 info.caller_id or "an unknown number", self.active)
        outcome = "ended"
        try:
            await self._handler(transport)
        except Exception:
            outcome = "failed"
            log.exception("call %s on %s: the call loop failed", info.call_id, info.channel)
        finally:
            self.active -= 1
            log.info("call %s on %s: %s after %.1f s (heard %.1f s of replies; %d active)",
                     info.call_id, info.channel, outcome, time.monotonic() - started,
                     transport.played_s, self.active)


async def serve(config: Config, endpoints: dict[str, tuple[str, int]],
                handler: CallHandler | None = None, stop: asyncio.Event | None = None,
                on_ready: Callable[[list[Gateway]], Any] | None = None) -> None:
    """Run the gateways until ``stop`` is set (by default: SIGINT or SIGTERM).

    ``handler`` defaults to ``CallService(config).handle`` with the models
    loaded once before any gateway listens, so the first caller does not wait.
    """
    if not endpoints:
        raise VoicedeskError("nothing to serve: pass --sip, --audiosocket or --websocket "
                             "HOST:PORT, or set them in [telephony]")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    service = None
    running: list[Gateway] = []
    calls = CallLog(handler or _not_ready)
    try:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        if handler is None:
            from voice.service import CallService

            service = CallService(config)
            log.info("loading models (shared by every call)")
            loaded = time.monotonic()
            await service.start()
            log.info("models ready in %.1f s", time.monotonic() - loaded)
            calls = CallLog(service.handle)
        gateways = [build_gateway(name, config.telephony, calls, *address)
                    for name, address in endpoints.items()]
        for gateway in gateways:
            if stop.is_set():
                break
            host, port = endpoints[gateway.name]
            try:
                await gateway.start()
            except OSError as exc:
                raise VoicedeskError(f"cannot listen for {gateway.name} on {host}:{port}: "
                                     f"{exc.strerror or exc}; choose another --{gateway.name} "
                                     f"address") from None
            running.append(gateway)
            bound_host, bound_port = gateway.address
            log.info("%s listening on %s:%d", gateway.name, bound_host, bound_port)
        telephony = config.telephony
        log.info("transfers go to %s; summaries to %s", telephony.transfer_target or
                 "(no transfer_target)", telephony.summary_webhook or "(no summary_webhook)")
        if on_ready is not None:
            on_ready(running)
        log.info("serving calls; SIGINT or SIGTERM stops")
        await stop.wait()
        log.info("stopping: %d call(s) in progress will be hung up", calls.active)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        results = await asyncio.gather(
            *(asyncio.wait_for(gateway.stop(), STOP_TIMEOUT_S) for gateway in running),
            return_exceptions=True)  # together: every caller is hung up at once
        for gateway, result in zip(running, results, strict=True):
            if isinstance(result, BaseException):
                log.error("%s gateway did not stop cleanly: %r", gateway.name, result)
        if service is not None:
            with contextlib.suppress(Exception):
                await service.stop()
        log.info("stopped after %d call(s)", calls.total)


async def _not_ready(transport: Transport) -> None:
    raise RuntimeError("no call handler")


def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    endpoints = enabled_endpoints(config.telephony, args)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = args.metrics if args.metrics is not None else config.telephony.metrics
    if metrics:
        from voice.metrics import start_metrics_server

        host, port = parse_address(metrics, "--metrics")
        try:
            start_metrics_server(host, port)
        except OSError as exc:
            raise VoicedeskError(f"cannot serve metrics on {metrics}: {exc.strerror or exc}; "
                                 f"choose another --metrics address") from None
        log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
    asyncio.run(serve(config, endpoints))
    return 0


def register(sub: Any) -> None:
    """Add ``voicedesk serve`` to the command's subparsers."""
    serve_cmd = sub.add_parser(
        "serve", help="answer live calls from SIP, Asterisk AudioSocket and WebSocket streams",
        description="Host live calls from every enabled gateway in one process, through one "
                    "call loop with shared models. A flag enables its gateway and overrides "
                    "the same [telephony] key; port 0 picks a free port (the log says which). "
                    "Runs until SIGINT or SIGTERM, then hangs up calls in progress and exits.")
    serve_cmd.add_argument("--sip", metavar="HOST:PORT",
                           help="SIP over UDP, RTP media (e.g. 0.0.0.0:5060)")
    serve_cmd.add_argument("--audiosocket", metavar="HOST:PORT",
                           help="Asterisk AudioSocket over TCP (e.g. 0.0.0.0:9092)")
    serve_cmd.add_argument("--websocket", metavar="HOST:PORT",
                           help="Twilio Media Streams and raw-PCM audio forks (jambonz, "
                                "FreeSWITCH) on one WebSocket port (e.g. 0.0.0.0:8765)")
    serve_cmd.add_argument("--metrics", metavar="HOST:PORT",
                           help="Prometheus metrics (per-stage turn latency, calls, barge-ins) "
                                "at http://HOST:PORT/metrics (e.g. 0.0.0.0:9100)")
    serve_cmd.set_defaults(func=cmd_serve)
