"""The SIP gateway: a user-agent server on UDP that answers calls into the call loop.

Operators point a PBX or SIP trunk at it. Each INVITE with a G.711 offer is
answered (100 Trying, 180 Ringing, 200 OK with our SDP, retransmitted until
the ACK); the confirmed call becomes a ``SipCall`` handed to the call loop's
handler in its own task. CANCEL, BYE, OPTIONS, INFO and NOTIFY (transfer
progress) are answered as RFC 3261 says. Every datagram is handled in
isolation: a malformed one is logged and answered ``400`` (or dropped when it
is not even a request), so one bad peer never disturbs the other calls.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from voice.gateways.base import CallHandler
from voice.gateways.sip.call import SipCall
from voice.gateways.sip.dialog import Dialog, caller_identity, new_tag
from voice.gateways.sip.message import SipMessage, SipSyntaxError, parse, response
from voice.gateways.sip.register import Registration
from voice.gateways.sip.rtp import RtpSession, bind_rtp_socket, parse_port_range
from voice.gateways.sip.sdp import SdpError, build_sdp, negotiate, parse_offer
from voice.gateways.sip.transaction import Address, ClientTransaction, ServerTransaction, Timers
from voice.transport import CallInfo
from voicedesk.config import TelephonyConfig

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY"
# Methods we know but do not serve as a UAS (405), as opposed to unknown ones (501).
KNOWN_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "PRACK", "UPDATE",
                           "REFER"})


@dataclass(frozen=True)
class SipOptions:
    """Behaviour that is not configuration an operator sets, but tests and deployments tune."""

    timers: Timers = field(default_factory=Timers)
    rtp_timeout_s: float = 30.0  # no RTP from the caller this long: the peer is gone
    symmetric_rtp: bool = False  # reply to the caller's RTP source address (callers behind NAT)
    ring_s: float = 0.0  # ringing before we answer (0: answer at once)
    transfer_wait_s: float = 8.0  # wait for the transfer target's answer (NOTIFY)
    max_calls: int = 500
    user_agent: str = "voicedesk"
    handler_grace_s: float = 30.0  # at stop, how long a call handler may take to finish
    # (storing the call included; the loop stores even when cancelled after this)


def split_host_port(spec: str, default_port: int = 5060) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not host:
        return spec or "0.0.0.0", default_port
    if not port.isdigit():
        raise ValueError(f"telephony.sip = {spec!r} is not HOST:PORT (e.g. 0.0.0.0:5060)")
    return host.strip("[]"), int(port)


def local_address_towards(peer: Address) -> str:
    """The local IP the kernel would use to reach ``peer`` (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(peer)
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, gateway: SipGateway) -> None:
        self.gateway = gateway

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self.gateway.datagram_received(data, addr[:2])
        except Exception:  # one bad datagram must never stop the server
            log.exception("SIP datagram of %d bytes from %s:%s could not be handled", len(data),
                          *addr[:2])

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)


class _Answering:
    """An INVITE between 100 Trying and its final response: what CANCEL must stop."""

    def __init__(self, call: SipCall, invite: SipMessage, tx: ServerTransaction) -> None:
        self.call = call
        self.invite = invite
        self.tx = tx
        self.task: asyncio.Task[None] | None = None


class SipGateway:
    """Implements ``voice.gateways.base.Gateway`` for SIP over UDP."""

    name = "sip"

    def __init__(self, config: TelephonyConfig, handler: CallHandler, host: str | None = None,
                 port: int | None = None, options: SipOptions | None = None) -> None:
        default_host, default_port = split_host_port(config.sip or "0.0.0.0:5060")
        self.config = config
        self.handler = handler
        self.host = host if host is not None else default_host
        self.port = port if port is not None else default_port
        self.options = options or SipOptions()
        self.rtp_ports = parse_port_range(config.rtp_ports)
        self._transport: asyncio.DatagramTransport | None = None
        self._calls: dict[tuple[str, str], SipCall] = {}  # (Call-ID, caller's tag)
        self._answering: dict[tuple[str, str], _Answering] = {}
        self._server_tx: dict[tuple[str, str], ServerTransaction] = {}
        self._client_tx: dict[str, ClientTransaction] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # call handlers
        self._background: set[asyncio.Task[None]] = set()
        self.registration: Registration | None = None
        self.calls_answered = 0
        self.malformed = 0

    # -- Gateway -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port))
        self.port = self._transport.get_extra_info("sockname")[1]
        log.info("SIP gateway listening on udp %s:%d (RTP ports %s)", self.host, self.port,
                 self.config.rtp_ports or "any")
        if self.config.registrar:
            self.registration = Registration(self, self.config)
            await self.registration.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    async def stop(self) -> None:
        if self.registration is not None:
            await self.registration.stop()
        for answering in list(self._answering.values()):
            if answering.task is not None:
                answering.task.cancel()
            self._reply(answering.tx, answering.invite, 480, "Temporarily Unavailable",
                        answering.call.dialog.local_tag)
            await answering.call.end("hangup", send_bye=False)
        self._answering.clear()
        calls = list(self._calls.values())
        if calls:  # BYE to each; a caller that does not answer is not waited for long
            ending = [asyncio.create_task(call.end("hangup")) for call in calls]
            _, late = await asyncio.wait(ending, timeout=self.options.timers.t1 * 8 + 1)
            for task in late:
                task.cancel()
        tasks = list(self._tasks)
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=self.options.handler_grace_s)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=1.0)
        for tx in self._server_tx.values():
            tx.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        log.info("SIP gateway on %s:%d stopped", self.host, self.port)

    # -- sending -------------------------------------------------------------------------
    def send(self, data: bytes, addr: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)

    def advertised_host(self, peer: Address) -> str:
        if self.config.public_address:
            return self.config.public_address
        if self.host in ("0.0.0.0", "", "::"):
            return local_address_towards(peer)
        return self.host

    def contact_uri(self, peer: Address) -> str:
        return f"sip:voicedesk@{self.advertised_host(peer)}:{self.port}"

    async def send_request(self, request: SipMessage, addr: Address) -> SipMessage | None:
        """Send a request we originate and wait for its final response (None: timed out)."""
        tx = ClientTransaction(self.send, addr, request, self.options.timers)
        branch = request.branch
        self._client_tx[branch] = tx
        try:
            return await tx.run()
        finally:
            self._client_tx.pop(branch, None)

    async def send_in_dialog(self, call: SipCall, method: str,
                             headers: list[tuple[str, str]] | None = None) -> SipMessage | None:
        if self._transport is None:
            return None
        request = call.dialog.request(method, self.advertised_host(call.remote), self.port,
                                      [("User-Agent", self.options.user_agent)]
                                      + (headers or []))
        return await self.send_request(request, call.remote)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, holding a reference so it is not collected."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def forget(self, call: SipCall) -> None:
        key = (call.dialog.call_id, call.dialog.remote_tag)
        if self._calls.get(key) is call:
            del self._calls[key]
        self._answering.pop(key, None)

    # -- receiving -----------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Address) -> None:
        if not data.strip(b"\r\n\t \x00"):
            return  # keep-alive (RFC 5626 CRLF ping) or padding
        try:
            message = parse(data)
        except SipSyntaxError as error:
            self._malformed(error, addr)
            return
        log.debug("SIP from %s:%s: %s", *addr, message.summary())
        if message.is_request:
            self._request(message, addr)
        else:
            tx = self._client_tx.get(message.branch)
            if tx is not None:
                tx.receive(message)
            else:
                log.debug("SIP response matches no request of ours: %s", message.summary())

    def _malformed(self, error: SipSyntaxError, addr: Address) -> None:
        self.malformed += 1
        message = error.message
        log.warning("malformed SIP from %s:%s (%s): %s", *addr,
                    message.summary() if message else "unreadable", error.reason)
        if message is None or not message.is_request or message.method == "ACK" \
                or not message.get("Via"):
            return  # nothing we could address a response to: dropped
        reason = "Version Not Supported" if error.status == 505 else "Bad Request"
        warning = re.sub(r"[^ -~]", "?", error.reason).replace('"', "'")[:200]
        reply = response(message, error.status, reason, to_tag=new_tag(),
                         headers=[("Warning", f'399 voicedesk "{warning}"')])
        self.send(reply.encode(), addr)

    @staticmethod
    def _tx_key(message: SipMessage) -> str:
        """RFC 3261 17.2.3: a transaction is its top Via's branch and sent-by (plus method)."""
        via = message.get_all("Via")[0]
        sent_by = via.split(";", 1)[0].split()[-1] if via.split(";", 1)[0].split() else via
        branch = message.branch
        if branch.startswith("z9hG4bK"):
            return f"{branch}|{sent_by}"
        return f"{message.call_id}|{message.cseq[0]}|{message.from_tag}|{sent_by}"  # RFC 2543

    def _reply(self, tx: ServerTransaction, request: SipMessage, status: int, reason: str,
               to_tag: str = "", headers: list[tuple[str, str]] | None = None,
               body: bytes = b"") -> None:
        extra = [("Server", self.options.user_agent)] + (headers or [])
        tx.respond(response(request, status, reason, to_tag or new_tag(), extra, body))

    def _request(self, message: SipMessage, addr: Address) -> None:
        method = message.method
        if method == "ACK":
            self._ack(message)
            return
        key = (self._tx_key(message), method)
        existing = self._server_tx.get(key)
        if existing is not None:
            existing.retransmit_last()
            return
        tx = ServerTransaction(self.send, addr, self.options.timers, invite=method == "INVITE",
                               label=f"{method} {message.call_id}")
        self._server_tx[key] = tx
        asyncio.get_running_loop().call_later(self.options.timers.timeout + 5,
                                              self._server_tx.pop, key, None)
        required = [r for r in message.get_all("Require") if r]
        if required and method not in ("CANCEL",):
            self._reply(tx, message, 420, "Bad Extension",
                        headers=[("Unsupported", ", ".join(required))])
            return
        handlers = {"INVITE": self._invite, "CANCEL": self._cancel, "BYE": self._bye,
                    "OPTIONS": self._options, "NOTIFY": self._notify, "INFO": self._info}
        handle = handlers.get(method)
        if handle is not None:
            handle(message, tx, addr)
        elif method in KNOWN_METHODS:
            self._reply(tx, message, 405, "Method Not Allowed", headers=[("Allow", ALLOW)])
        else:
            log.info("unknown SIP method %r from %s:%s answered 501", method[:40], *addr)
            self._reply(tx, message, 501, "Not Implemented", headers=[("Allow", ALLOW)])

    def _call_for(self, message: SipMessage) -> SipCall | None:
        call = self._calls.get((message.call_id, message.from_tag))
        if call is not None and message.to_tag and message.to_tag != call.dialog.local_tag:
            return None
        return call

    # -- INVITE and its outcomes ---------------------------------------------------------
    def _invite(self, invite: SipMessage, tx: ServerTransaction, addr: Address) -> None:
        if invite.to_tag:
            self._reinvite(invite, tx)
            return
        tx.respond(response(invite, 100, "Trying"))
        key = (invite.call_id, invite.from_tag)
        if key in self._calls:
            self._reply(tx, invite, 482, "Loop Detected")  # same dialog id, new branch
            return
        if len(self._calls) >= self.options.max_calls:
            log.warning("call %s refused: %d calls already (max_calls)", invite.call_id,
                        len(self._calls))
            self._reply(tx, invite, 486, "Busy Here")
            return
        try:
            if not invite.body:
                raise SdpError("the INVITE has no SDP offer (delayed offer is not supported)")
            media = negotiate(parse_offer(invite.body))
        except SdpError as error:
            log.warning("call %s from %s:%s refused 488: %s", invite.call_id, *addr, error)
            warning = str(error).replace('"', "'")
            self._reply(tx, invite, 488, "Not Acceptable Here",
                        headers=[("Warning", f'304 voicedesk "{warning}"')])
            return
        try:
            sock = bind_rtp_socket("0.0.0.0" if self.host in ("", "::") else self.host,
                                   self.rtp_ports)
        except OSError as error:
            log.error("call %s refused 503: %s", invite.call_id, error)
            self._reply(tx, invite, 503, "Service Unavailable")
            return
        number, display = caller_identity(invite)
        dialog = Dialog.from_invite(invite, self.contact_uri(addr))
        info = CallInfo(
            call_id=invite.call_id, channel="sip", caller_id=number, sample_rate=8000,
            metadata={"caller_name": display, "from": invite.get("From"),
                      "to": dialog.local_uri, "codec": media.codec,
                      "remote_media": f"{media.address}:{media.port}",
                      "user_agent": invite.get("User-Agent"), "remote_signalling":
                      f"{addr[0]}:{addr[1]}",
                      "sip_headers": {k: v for k, v in invite.headers
                                      if k.lower().startswith("x-")}})
        call = SipCall(self, dialog, info, addr)
        call.rtp = RtpSession(sock, media, call.playout, call.audio_received,
                              call.digit_received, lambda: self._rtp_timeout(call),
                              self.options.rtp_timeout_s, label=invite.call_id,
                              symmetric=self.options.symmetric_rtp)
        call.invite_tx = tx
        self._calls[key] = call
        log.info("call %s from %s (%s:%s) to %s, %s", invite.call_id, number or "anonymous",
                 *addr, dialog.local_uri, media.codec)
        contact = [("Contact", f"<{dialog.local_contact}>")]
        self._reply(tx, invite, 180, "Ringing", dialog.local_tag, contact)
        answering = _Answering(call, invite, tx)
        self._answering[key] = answering
        tx.on_give_up = lambda: self._no_ack(call)
        answering.task = asyncio.create_task(self._answer(answering))

    async def _answer(self, answering: _Answering) -> None:
        call, invite, tx = answering.call, answering.invite, answering.tx
        if self.options.ring_s > 0:
            await asyncio.sleep(self.options.ring_s)
        key = (invite.call_id, invite.from_tag)
        if self._answering.pop(key, None) is None or call.rtp is None:
            return  # cancelled while ringing
        rtp = call.rtp
        await rtp.start()
        media = rtp.media
        host = self.advertised_host(call.remote)
        sdp = build_sdp(host, rtp.port, media.codec_pt, media.codec, media.dtmf_pt,
                        session_id=zlib.crc32(invite.call_id.encode()), direction=media.direction)
        call.local_sdp = sdp
        call.answered = True
        self._reply(tx, invite, 200, "OK", call.dialog.local_tag, [
            ("Contact", f"<{call.dialog.local_contact}>"), ("Allow", ALLOW),
            ("Supported", "replaces"), ("Content-Type", "application/sdp")], sdp)
        self.calls_answered += 1

    def _reinvite(self, invite: SipMessage, tx: ServerTransaction) -> None:
        call = self._call_for(invite)
        if call is None or call.rtp is None:
            self._reply(tx, invite, 481, "Call/Transaction Does Not Exist")
            return
        if invite.body:
            try:
                call.rtp.update_remote(negotiate(parse_offer(invite.body)))
            except SdpError as error:
                self._reply(tx, invite, 488, "Not Acceptable Here",
                            headers=[("Warning", f'304 voicedesk "{error}"')])
                return
        media = call.rtp.media
        sdp = build_sdp(self.advertised_host(call.remote), call.rtp.port, media.codec_pt,
                        media.codec, media.dtmf_pt, zlib.crc32(invite.call_id.encode()),
                        version=invite.cseq[0], direction=media.direction)
        call.reinvite_tx = tx
        self._reply(tx, invite, 200, "OK", call.dialog.local_tag, [
            ("Contact", f"<{call.dialog.local_contact}>"), ("Allow", ALLOW),
            ("Content-Type", "application/sdp")], sdp)

    def _ack(self, ack: SipMessage) -> None:
        tx = self._server_tx.get((self._tx_key(ack), "INVITE"))
        if tx is not None and tx.final is not None and tx.final.status >= 300:
            tx.acknowledge()  # ACK of a rejection (487, 488, 486): same branch as the INVITE
            return
        call = self._call_for(ack)
        if call is None:
            log.debug("ACK for no call: %s", ack.summary())
            return
        for invite_tx in (call.reinvite_tx, call.invite_tx):
            if invite_tx is not None and not invite_tx.acked and invite_tx.final is not None:
                invite_tx.acknowledge()
        if not call.confirmed and not call.is_ending and call.answered:
            call.confirmed = True
            task = asyncio.create_task(self._run_call(call), name=f"call {call.info.call_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _no_ack(self, call: SipCall) -> None:
        if not call.confirmed:
            log.warning("call %s: the caller never acknowledged our 200 OK; hanging up",
                        call.info.call_id)
            self._spawn(call.end("error"))

    def _rtp_timeout(self, call: SipCall) -> None:
        self._spawn(call.end("timeout"))

    async def _run_call(self, call: SipCall) -> None:
        try:
            await self.handler(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call %s: the call handler failed; hanging up", call.info.call_id)
        finally:
            await call.end("hangup")

    def _cancel(self, cancel: SipMessage, tx: ServerTransaction, addr: Address) -> None:
        key = (cancel.call_id, cancel.from_tag)
        answering = self._answering.pop(key, None)
        invite_tx = self._server_tx.get((self._tx_key(cancel), "INVITE"))
        if answering is None:
            known = invite_tx is not None or key in self._calls
            self._reply(tx, cancel, 200 if known else 481,
                        "OK" if known else "Call/Transaction Does Not Exist")
            return
        self._reply(tx, cancel, 200, "OK")
        call = answering.call
        if answering.task is not None:
            answering.task.cancel()
        self._reply(answering.tx, answering.invite, 487, "Request Terminated",
                    call.dialog.local_tag)
        log.info("call %s cancelled by the caller before answer", call.info.call_id)
        self._spawn(call.end("hangup", send_bye=False))

    def _bye(self, bye: SipMessage, tx: ServerTransaction, addr: Address) -> None:
        call = self._call_for(bye)
        if call is None:
            self._reply(tx, bye, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(tx, bye, 200, "OK", call.dialog.local_tag)
        if call.invite_tx is not None:
            call.invite_tx.cancel()  # a BYE before the ACK also ends the 200 retransmissions
        log.info("call %s: caller hung up", call.info.call_id)
        self._spawn(call.end("hangup", send_bye=False))

    def _options(self, request: SipMessage, tx: ServerTransaction, addr: Address) -> None:
        self._reply(tx, request, 200, "OK", headers=[
            ("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "replaces")])

    def _notify(self, notify: SipMessage, tx: ServerTransaction, addr: Address) -> None:
        call = self._call_for(notify)
        if call is None:
            self._reply(tx, notify, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(tx, notify, 200, "OK", call.dialog.local_tag)
        if "sipfrag" in notify.get("Content-Type").lower():
            match = re.match(rb"\s*SIP/2\.0\s+(\d{3})", notify.body)
            if match:
                status = int(match.group(1))
                log.info("call %s: transfer progress %d", call.info.call_id, status)
                call.transfer_progress(status)

    def _info(self, info: SipMessage, tx: ServerTransaction, addr: Address) -> None:
        call = self._call_for(info)
        if call is None:
            self._reply(tx, info, 481, "Call/Transaction Does Not Exist")
            return
        self._reply(tx, info, 200, "OK", call.dialog.local_tag)
        kind = info.get("Content-Type").lower()
        text = info.body.decode("ascii", "replace")
        digit = ""
        if "dtmf-relay" in kind:
            match = re.search(r"Signal\s*=\s*([0-9*#A-Da-d])", text)
            digit = match.group(1).upper() if match else ""
        elif "application/dtmf" in kind:
            digit = text.strip()[:1].upper()
        if digit and digit in "0123456789*#ABCD":
            call.digit_received(digit)
