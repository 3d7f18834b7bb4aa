"""Optional registration with a SIP trunk or registrar (RFC 3261 10), kept fresh.

Trunks that deliver calls to a registered contact need the gateway to
REGISTER (with digest authentication) and to refresh before the binding
expires; at shutdown it unregisters (Expires: 0) so calls stop arriving.
A failed registration is logged and retried; it never stops the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING

from voice.gateways.sip.dialog import new_branch, new_tag
from voice.gateways.sip.digest import authorization, parse_challenge
from voice.gateways.sip.message import SipMessage, header_param, parse_name_addr
from voicedesk.config import TelephonyConfig

if TYPE_CHECKING:
    from voice.gateways.sip.gateway import SipGateway

log = logging.getLogger(__name__)


def parse_registrar(uri: str) -> tuple[str, int]:
    """``sip:host[:port]`` (or ``host:port``) into (host, port)."""
    rest = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:")) else uri
    rest = rest.split(";", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    if not host or (port and not port.isdigit()):
        raise ValueError(f"telephony.registrar = {uri!r} is not sip:host[:port]")
    return host, int(port or 5060)


class Registration:
    """One binding of our contact at the registrar, refreshed until ``stop``."""

    def __init__(self, gateway: SipGateway, config: TelephonyConfig, expires: int = 3600,
                 retry_s: float = 30.0) -> None:
        self.gateway = gateway
        self.config = config
        self.expires = expires
        self.retry_s = retry_s
        self.host, self.port = parse_registrar(config.registrar)
        self.call_id = f"{new_tag()}{new_tag()}@voicedesk"
        self.tag = new_tag()
        self.cseq = 0
        self.challenge: dict[str, str] | None = None
        self.proxy = False  # the challenge came from a proxy (407), not the registrar (401)
        self.nc = 0
        self.granted = 0  # seconds the registrar granted the last time; 0: not registered
        self.registrations = 0
        self._addr: tuple[str, int] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def aor(self) -> str:
        return f"sip:{self.config.username or 'voicedesk'}@{self.host}"

    async def start(self) -> None:
        infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.port,
                                                             family=socket.AF_INET,
                                                             type=socket.SOCK_DGRAM)
        self._addr = infos[0][4][:2]
        self._task = asyncio.create_task(self._keep_registered(), name="sip registration")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.granted:
            await self.register(0)

    async def _keep_registered(self) -> None:
        while True:
            granted = await self.register(self.expires)
            wait = max(1.0, granted * 0.8) if granted else self.retry_s
            await asyncio.sleep(wait)

    def _request(self, expires: int, auth: tuple[str, str] | None) -> SipMessage:
        assert self._addr is not None
        self.cseq += 1
        host = self.gateway.advertised_host(self._addr)
        user = self.config.username or "voicedesk"
        message = SipMessage(method="REGISTER", uri=f"sip:{self.host}:{self.port}")
        message.headers = [
            ("Via", f"SIP/2.0/UDP {host}:{self.gateway.port};branch={new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={self.tag}"),
            ("To", f"<{self.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<sip:{user}@{host}:{self.gateway.port}>"),
            ("Expires", str(expires)),
            ("User-Agent", self.gateway.options.user_agent),
        ]
        if auth is not None:
            message.headers.append(auth)
        return message

    def _answer(self, uri: str) -> tuple[str, str] | None:
        """The credentials header for the last challenge (reused, nonce count +1)."""
        if self.challenge is None:
            return None
        password = os.environ.get(self.config.password_env, "")
        self.nc += 1
        value = authorization(self.challenge, "REGISTER", uri, self.config.username, password,
                              nc=self.nc)
        return ("Proxy-Authorization" if self.proxy else "Authorization"), value

    async def register(self, expires: int) -> int:
        """One REGISTER exchange (answering at most one fresh challenge); the granted
        expiry in seconds, 0 when unregistered or refused."""
        assert self._addr is not None
        uri = f"sip:{self.host}:{self.port}"
        reply = await self.gateway.send_request(self._request(expires, self._answer(uri)),
                                                self._addr)
        if reply is not None and reply.status in (401, 407):
            header = "WWW-Authenticate" if reply.status == 401 else "Proxy-Authenticate"
            try:
                self.challenge = parse_challenge(reply.get(header))
            except ValueError as error:
                log.error("registrar %s: %s", uri, error)
                return 0
            self.proxy = reply.status == 407
            self.nc = 0
            if not os.environ.get(self.config.password_env):
                log.error("registrar %s asks for a password, but %s is not set", uri,
                          self.config.password_env)
                return 0
            reply = await self.gateway.send_request(
                self._request(expires, self._answer(uri)), self._addr)
        if reply is not None and reply.status == 423 and reply.get("Min-Expires").isdigit():
            self.expires = int(reply.get("Min-Expires"))
            return await self.register(self.expires)
        if reply is None or reply.status >= 300:
            what = f"{reply.status} {reply.reason}" if reply else "no answer"
            log.error("registration of %s with %s failed: %s; retrying in %.0f s", self.aor,
                      uri, what, self.retry_s)
            self.granted = 0
            return 0
        self.granted = self._granted(reply, expires)
        if expires:
            self.registrations += 1
            log.info("registered %s with %s for %d s", self.aor, uri, self.granted)
        else:
            log.info("unregistered %s from %s", self.aor, uri)
        return self.granted

    def _granted(self, reply: SipMessage, asked: int) -> int:
        if asked == 0:
            return 0
        for contact in reply.get_all("Contact"):
            with contextlib.suppress(ValueError):
                expires = parse_name_addr(contact, "Contact").params.get("expires", "")
                if expires.isdigit():
                    return int(expires)
        value = reply.get("Expires") or header_param(reply.get("Contact"), "expires")
        return int(value) if value.isdigit() else asked
