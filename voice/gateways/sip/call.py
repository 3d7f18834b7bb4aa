"""One answered SIP call as the call loop sees it: a ``Transport``.

Events from the line (decoded audio frames, RFC 4733 digits, the line
closing) wait in a queue for ``receive``; ``play`` feeds the play-out queue
that the RTP clock drains. Hanging up, being hung up on, timing out and
transferring all end the same way: one ``LineClosed`` with the reason, media
stopped, the dialog closed with BYE unless the caller already sent one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from voice.gateways.sip.dialog import Dialog
from voice.gateways.sip.rtp import RtpSession
from voice.gateways.sip.transaction import ServerTransaction
from voice.gateways.sip.transfer import SUMMARY_HEADER, summary_header
from voice.gateways.webhook import post_summary, transfer_payload
from voice.transport import CallerAudio, CallInfo, KeyPress, LineClosed, LineEvent, Playout

if TYPE_CHECKING:
    from voice.gateways.sip.gateway import SipGateway

log = logging.getLogger(__name__)


class SipCall:
    """The ``Transport`` of one SIP call (see voice/transport.py)."""

    def __init__(self, gateway: SipGateway, dialog: Dialog, info: CallInfo,
                 remote: tuple[str, int]) -> None:
        self.gateway = gateway
        self.dialog = dialog
        self.info = info
        self.remote = remote  # where the INVITE came from: in-dialog requests go there
        self.playout = Playout()
        self.rtp: RtpSession | None = None
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()
        self._closed: LineClosed | None = None
        self._closing: asyncio.Task[None] | None = None
        self._transfer_status: asyncio.Future[int] | None = None
        self.invite_tx: ServerTransaction | None = None  # retransmits our 200 until the ACK
        self.reinvite_tx: ServerTransaction | None = None
        self.answered = False  # 200 OK sent
        self.confirmed = False  # ACK received: the handler runs
        self.local_sdp = b""

    # -- events from the line -------------------------------------------------------------
    def audio_received(self, samples: np.ndarray) -> None:
        if self._closed is None:
            self._events.put_nowait(CallerAudio(samples))

    def digit_received(self, digit: str) -> None:
        if self._closed is None:
            log.info("call %s: caller pressed %s", self.info.call_id, "*" if digit.isdigit()
                     else digit)  # digits may be a PIN: never logged
            self._events.put_nowait(KeyPress(digit))

    def transfer_progress(self, status: int) -> None:
        """A NOTIFY told how the transfer target answered."""
        if self._transfer_status is not None and not self._transfer_status.done() \
                and status >= 200:
            self._transfer_status.set_result(status)

    # -- Transport ---------------------------------------------------------------------
    async def receive(self) -> LineEvent:
        if self._closed is not None and self._events.empty():
            return self._closed
        event = await self._events.get()
        if isinstance(event, LineClosed):
            self._closed = event
        return event

    def play(self, samples: np.ndarray) -> None:
        if self._closed is None:
            self.playout.put(samples)

    def clear(self) -> None:
        self.playout.clear()

    @property
    def played_s(self) -> float:
        return self.playout.played / self.info.sample_rate

    @property
    def pending_s(self) -> float:
        return self.playout.queued / self.info.sample_rate

    def send_digits(self, digits: str, duration_ms: int = 100) -> None:
        """Send keypad digits to the caller as RFC 4733 events (for IVRs behind the trunk)."""
        if self.rtp is None:
            raise RuntimeError(f"call {self.info.call_id} has no media yet")
        self.rtp.send_digits(digits, duration_ms)

    async def transfer(self, target: str, summary: dict[str, Any]) -> bool:
        """REFER the caller to ``target`` (default: telephony.transfer_target)."""
        config = self.gateway.config
        target = target or config.transfer_target
        call_id = self.info.call_id
        if self._closed is not None or self.is_ending:
            log.warning("call %s: cannot transfer, the line is already closed", call_id)
            return False
        if not target:
            log.warning("call %s: no transfer target: set telephony.transfer_target to a SIP "
                        "URI such as sip:agents@pbx.example.com", call_id)
            return False
        if not target.lower().startswith(("sip:", "sips:", "tel:")):
            target = f"sip:{target}"
        if config.summary_webhook:  # the same JSON every gateway sends, before the REFER
            await post_summary(config.summary_webhook,
                               transfer_payload(self.info, target, summary))
        self._transfer_status = asyncio.get_running_loop().create_future()
        headers = [("Refer-To", f"<{target}>"), ("Referred-By", f"<{self.dialog.local_uri}>")]
        if summary:
            headers.append((SUMMARY_HEADER, summary_header(summary)))
        reply = await self.gateway.send_in_dialog(self, "REFER", headers)
        if reply is None or reply.status >= 300:
            log.warning("call %s: transfer to %s refused (%s)", call_id, target,
                        f"{reply.status} {reply.reason}" if reply else "no answer")
            return False
        try:
            status = await asyncio.wait_for(asyncio.shield(self._transfer_status),
                                            self.gateway.options.transfer_wait_s)
        except TimeoutError:
            status = 0  # accepted, no final NOTIFY: the PBX took the call
        if status >= 300:
            log.warning("call %s: transfer target %s answered %d; the caller stays with us",
                        call_id, target, status)
            return False
        log.info("call %s: transferred to %s", call_id, target)
        await self.end("transferred")
        return True

    async def close(self) -> None:
        await self.end("hangup")

    # -- ending ------------------------------------------------------------------------
    @property
    def is_ending(self) -> bool:
        return self._closing is not None

    async def end(self, reason: str, send_bye: bool = True) -> None:
        """End the call once, however it ends; later calls wait for the first to finish."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._end(reason, send_bye))
        await asyncio.shield(self._closing)

    async def _end(self, reason: str, send_bye: bool) -> None:
        if self.invite_tx is not None:
            self.invite_tx.cancel()  # no more 200 retransmissions for a call that is over
        if self.rtp is not None:
            await self.rtp.close()
        self.playout.clear()
        self._events.put_nowait(LineClosed(reason))
        self.gateway.forget(self)
        log.info("call %s ended: %s", self.info.call_id, reason)
        if send_bye and self.answered:
            reply = await self.gateway.send_in_dialog(self, "BYE")
            if reply is None:
                log.info("call %s: no answer to our BYE (the caller is gone)", self.info.call_id)
