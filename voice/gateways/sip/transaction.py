"""SIP transactions over UDP (RFC 3261 17): what makes an unreliable transport reliable.

A server transaction remembers its last response, so a retransmitted request
gets the same answer instead of a second call; a final response to an INVITE
is retransmitted (T1, doubling up to T2) until the ACK arrives, or given up
after 64*T1. A client transaction retransmits its request the same way until
a final response arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from voice.gateways.sip.message import SipMessage

log = logging.getLogger(__name__)

Address = tuple[str, int]
Send = Callable[[bytes, Address], None]


@dataclass(frozen=True)
class Timers:
    """RFC 3261 timer values; tests shrink T1 so that 64*T1 takes seconds, not half a minute."""

    t1: float = 0.5  # round-trip estimate
    t2: float = 4.0  # cap on the retransmission interval

    @property
    def timeout(self) -> float:
        return 64 * self.t1


class ServerTransaction:
    """The answering side of one request."""

    def __init__(self, send: Send, addr: Address, timers: Timers, invite: bool,
                 on_give_up: Callable[[], None] | None = None, label: str = "") -> None:
        self._send = send
        self.addr = addr
        self.timers = timers
        self.invite = invite
        self.on_give_up = on_give_up
        self.label = label
        self.last: bytes | None = None
        self.final: SipMessage | None = None
        self.acked = False
        self._task: asyncio.Task[None] | None = None

    def respond(self, message: SipMessage) -> None:
        self.last = message.encode()
        self._send(self.last, self.addr)
        if message.status >= 200:
            self.final = message
            if self.invite and self._task is None:
                self._task = asyncio.create_task(self._retransmit(),
                                                 name=f"retransmit {self.label}")

    def retransmit_last(self) -> None:
        """The request came again: our answer was lost, send it again."""
        if self.last is not None:
            self._send(self.last, self.addr)

    def acknowledge(self) -> None:
        self.acked = True
        self.cancel()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _retransmit(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timers.timeout
        interval = self.timers.t1
        while not self.acked:
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
            if self.acked:
                return
            if loop.time() >= deadline:
                status = self.final.status if self.final else 0
                log.warning("%s: no ACK for our %d after %.1f s (64*T1); giving up", self.label,
                            status, self.timers.timeout)
                self._task = None
                if self.on_give_up is not None:
                    self.on_give_up()
                return
            if self.last is not None:
                log.debug("%s: retransmitting %s", self.label,
                          self.final.summary() if self.final else "response")
                self._send(self.last, self.addr)
            interval = min(interval * 2, self.timers.t2)


class ClientTransaction:
    """One request we send and the final response we wait for (None after 64*T1)."""

    def __init__(self, send: Send, addr: Address, request: SipMessage, timers: Timers) -> None:
        self._send = send
        self.addr = addr
        self.request = request
        self.timers = timers
        self._data = request.encode()
        self._done: asyncio.Future[SipMessage | None] = \
            asyncio.get_running_loop().create_future()
        self._provisional = False

    def receive(self, response: SipMessage) -> None:
        if response.status < 200:
            self._provisional = True
        elif not self._done.done():
            self._done.set_result(response)

    async def run(self) -> SipMessage | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timers.timeout
        interval = self.timers.t1
        self._send(self._data, self.addr)
        while True:
            wait = min(interval, deadline - loop.time())
            if wait <= 0:
                log.warning("no final response to %s from %s:%s within %.1f s",
                            self.request.summary(), *self.addr, self.timers.timeout)
                return None
            try:
                return await asyncio.wait_for(asyncio.shield(self._done), wait)
            except TimeoutError:
                self._send(self._data, self.addr)
                interval = self.timers.t2 if self._provisional else min(interval * 2,
                                                                        self.timers.t2)
