"""Handing a SIP call to a person: REFER with the summary in X-Call-Summary, a webhook with the
full summary, and BYE once the agent has the caller; a refused transfer keeps the call."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest

from tests.sip.peers import NEED_SIPP, SIPP, free_udp_port, run_sipp
from voice.gateways.sip import SipGateway, SipOptions
from voice.gateways.sip.transaction import Timers
from voice.gateways.sip.transfer import summary_header
from voice.transport import LineClosed, Transport
from voicedesk.config import TelephonyConfig

pytestmark = pytest.mark.skipif(SIPP is None, reason=NEED_SIPP)

SUMMARY = {"intent": "billing_dispute", "account": "ACC-1042", "disposition": "transferred",
           "summary": "Caller disputes a roaming charge of 42.10 on the March bill; verified.",
           "turns": 6}


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class TransferringHandler:
    def __init__(self, target: str) -> None:
        self.target = target
        self.result: bool | None = None
        self.closed: str | None = None

    async def __call__(self, line: Transport) -> None:
        line.play(np.zeros(4000, np.float32))
        await asyncio.sleep(0.3)
        self.result = await line.transfer(self.target, SUMMARY)
        if not self.result:
            assert line.pending_s >= 0  # the line still works: we say goodbye ourselves
            await line.close()
        while True:
            event = await asyncio.wait_for(line.receive(), 15)
            if isinstance(event, LineClosed):
                self.closed = event.reason
                return


def _run(tmp_path: Path, refer_status: str, agent_status: str, webhook: str = ""
         ) -> tuple[TransferringHandler, object]:
    async def scenario() -> tuple[TransferringHandler, object]:
        handler = TransferringHandler("sip:agents@127.0.0.1:5999")
        config = TelephonyConfig(rtp_ports="", summary_webhook=webhook)
        gateway = SipGateway(config, handler, "127.0.0.1", 0,
                             SipOptions(timers=Timers(t1=0.1), transfer_wait_s=5))
        await gateway.start()
        try:
            result = await run_sipp("uac_transfer.xml", gateway.address, tmp_path / "sipp",
                                    fill={"codec_pt": "0", "codec": "PCMU",
                                          "capture_port": str(free_udp_port()),
                                          "refer_status": refer_status,
                                          "agent_status": agent_status}, timeout_s=25)
        finally:
            await gateway.stop()
        return handler, result

    return asyncio.run(scenario())


def test_transfer_refers_the_caller_with_the_summary_then_hangs_up(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        handler, result = _run(tmp_path, "202 Accepted", "200 OK",
                               webhook=f"http://127.0.0.1:{server.server_port}/summary")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.explain()  # type: ignore[attr-defined]
    assert handler.result is True
    assert handler.closed == "transferred"
    refer = re.search(r"REFER sip:caller@.*?Content-Length", result.messages, re.S)  # type: ignore
    assert refer, result.messages  # type: ignore[attr-defined]
    assert "Refer-To: <sip:agents@127.0.0.1:5999>" in refer.group(0)
    header = re.search(r"X-Call-Summary: (\S+)", refer.group(0)).group(1)
    fields = {k: v[0] for k, v in parse_qs(header).items()}
    assert fields["intent"] == "billing_dispute"
    assert fields["account"] == "ACC-1042"
    assert fields["summary"].startswith("Caller disputes a roaming charge of 42.10")
    assert len(_Webhook.received) == 1
    posted = _Webhook.received[0]
    assert (posted["event"], posted["channel"], posted["caller_id"], posted["target"]) == \
        ("transfer", "sip", "+15550100", "sip:agents@127.0.0.1:5999")
    assert posted["summary"] == SUMMARY
    assert re.fullmatch(r"1-\d+@127\.0\.0\.1", posted["call_id"])  # SIPp's Call-ID
    assert posted["metadata"]["codec"] == "PCMU"


def test_transfer_the_agent_declines_keeps_the_caller_on_the_line(tmp_path: Path) -> None:
    handler, result = _run(tmp_path, "202 Accepted", "486 Busy Here")
    assert handler.result is False
    # The caller stayed with the assistant; the call ended later with our ordinary hang-up.
    assert handler.closed == "hangup"
    assert result.returncode == 0, result.explain()  # type: ignore[attr-defined]


def test_summary_header_is_short_and_url_encoded() -> None:
    long = {"summary": "word " * 1000, "intent": "outage", "slots": {"postcode": "SW1A 1AA"}}
    header = summary_header(long)
    assert len(header) <= 700
    assert " " not in header and "\r" not in header
    fields = {k: v[0] for k, v in parse_qs(header).items()}
    assert fields["summary"].endswith("~")
    assert fields["intent"] == "outage"
    assert json.loads(fields["slots"]) == {"postcode": "SW1A 1AA"}
