"""The SIP gateway answering real SIPp callers on loopback: audio, CANCEL, BYE, lost ACK, DTMF,
PCMA, load.

The handler stands in for the call loop: it plays a real recording (espeak-ng
speech) and keeps what the caller sent. SIPp never records what it receives,
so each INVITE's SDP points our RTP at a port this test listens on.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from asr.audio import load_audio
from asr.telephony import g711_decode, g711_encode
from tests.sip.peers import (
    NEED_SIPP,
    SIPP,
    RecordingHandler,
    RtpCapture,
    free_udp_port,
    match_fraction,
    run_sipp,
)
from voice.gateways.sip import SipGateway, SipOptions
from voice.gateways.sip.transaction import Timers
from voice.transport import Transport
from voicedesk.config import TelephonyConfig

pytestmark = pytest.mark.skipif(SIPP is None, reason=NEED_SIPP)

PCAP_DIR = Path("/usr/share/sip-tester")
REPLY_TEXT = "Your account balance is forty two dollars and ten cents."
CALLER_TEXT = "I would like to know my balance please."


def _speak(text: str, path: Path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
    return load_audio(path, rate=8000).samples


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("speech")
    return {"reply": _speak(REPLY_TEXT, folder / "reply.wav"),
            "caller": _speak(CALLER_TEXT, folder / "caller.wav")}


def _gateway(handler: Callable[[Transport], Awaitable[None]], **options: float) -> SipGateway:
    timers = Timers(t1=float(options.pop("t1", 0.1)))
    return SipGateway(TelephonyConfig(rtp_ports=""), handler, "127.0.0.1", 0,
                      SipOptions(timers=timers, **options))  # type: ignore[arg-type]


def _payload_stream(capture: RtpCapture, pt: int) -> bytes:
    packets = sorted((p for p in capture.packets if p.payload_type == pt),
                     key=lambda p: p.sequence)
    return b"".join(p.payload for p in packets)


async def _audio_call(tmp_path: Path, speech: dict[str, np.ndarray], law: str, pt: int,
                      codec: str) -> None:
    caller_file = tmp_path / f"caller.{law}"
    caller_file.write_bytes(g711_encode(speech["caller"], law))  # type: ignore[arg-type]
    handler = RecordingHandler(speech["reply"])
    gateway = _gateway(handler)
    await gateway.start()
    capture = await RtpCapture.open()
    try:
        call_ms = int(len(speech["reply"]) / 8 + 1000)
        result = await run_sipp("uac_audio.xml", gateway.address, tmp_path / "sipp", fill={
            "audio_file": str(caller_file), "codec_pt": str(pt), "codec": codec,
            "capture_port": str(capture.port), "call_ms": str(call_ms)}, timeout_s=30)
        await asyncio.sleep(0.3)
    finally:
        await gateway.stop()
        capture.close()
    assert result.returncode == 0, result.explain()
    assert len(handler.calls) == 1
    call = handler.calls[0]
    assert call["closed"] == "hangup"
    assert call["info"].caller_id == "+15550100"
    assert call["info"].metadata["codec"] == codec
    # The caller heard every sample of our reply, in order, in the negotiated codec.
    sent = _payload_stream(capture, pt)
    assert {p.payload_type for p in capture.packets} == {pt}
    assert g711_encode(speech["reply"], law) in sent  # type: ignore[arg-type]
    assert call["played_s"] == pytest.approx(len(speech["reply"]) / 8000, abs=0.001)
    # ...and we received the caller's recording through the jitter buffer, sample-exact
    # (a frame may be late on a loaded machine: that costs 20 ms, never order or values).
    expected = g711_decode(g711_encode(speech["caller"], law), law)  # type: ignore[arg-type]
    assert match_fraction(call["audio"], expected) >= 0.95
    assert gateway.active_calls == 0


def test_call_streams_rtp_both_ways_in_pcmu(tmp_path: Path, speech: dict) -> None:
    asyncio.run(_audio_call(tmp_path, speech, "ulaw", 0, "PCMU"))


def test_call_offering_only_pcma_is_answered_in_pcma(tmp_path: Path, speech: dict) -> None:
    asyncio.run(_audio_call(tmp_path, speech, "alaw", 8, "PCMA"))


def test_cancel_before_answer_gets_487_and_never_reaches_the_loop(tmp_path: Path) -> None:
    async def scenario() -> None:
        handler = RecordingHandler(np.zeros(800, np.float32))
        gateway = _gateway(handler, ring_s=3.0)
        await gateway.start()
        try:
            result = await run_sipp("uac_cancel.xml", gateway.address, tmp_path / "sipp",
                                    fill={"capture_port": str(free_udp_port()), "codec_pt": "0",
                                          "codec": "PCMU"}, timeout_s=15)
            await asyncio.sleep(3.2)  # past the ring time: a cancelled call must stay unanswered
        finally:
            await gateway.stop()
        assert result.returncode == 0, result.explain()
        assert "SIP/2.0 487 Request Terminated" in result.messages
        assert "SIP/2.0 200 OK" in result.messages  # the CANCEL's own answer
        assert handler.calls == []
        assert gateway.calls_answered == 0
        assert gateway.active_calls == 0

    asyncio.run(scenario())


def test_assistant_hangs_up_with_bye_after_its_reply(tmp_path: Path, speech: dict) -> None:
    async def scenario() -> None:
        caller_file = tmp_path / "caller.ulaw"
        caller_file.write_bytes(g711_encode(speech["caller"], "ulaw"))
        handler = RecordingHandler(speech["reply"], hang_up_after_play=True)
        gateway = _gateway(handler)
        await gateway.start()
        capture = await RtpCapture.open()
        try:
            result = await run_sipp("uac_wait_bye.xml", gateway.address, tmp_path / "sipp", fill={
                "audio_file": str(caller_file), "codec_pt": "0", "codec": "PCMU",
                "capture_port": str(capture.port), "bye_timeout_ms": "15000"}, timeout_s=25)
        finally:
            await gateway.stop()
            capture.close()
        assert result.returncode == 0, result.explain()
        assert re.search(r"BYE sip:caller@127\.0\.0\.1:\d+ SIP/2\.0", result.messages)
        call = handler.calls[0]
        assert call["closed"] == "hangup"
        assert call["played_s"] == pytest.approx(len(speech["reply"]) / 8000, abs=0.001)
        assert g711_encode(speech["reply"], "ulaw") in _payload_stream(capture, 0)

    asyncio.run(scenario())


def test_lost_ack_is_recovered_by_retransmitting_200(tmp_path: Path, speech: dict) -> None:
    async def scenario() -> None:
        caller_file = tmp_path / "caller.ulaw"
        caller_file.write_bytes(g711_encode(speech["caller"][:8000], "ulaw"))
        handler = RecordingHandler(speech["reply"][:8000])
        gateway = _gateway(handler, t1=0.1)
        await gateway.start()
        capture = await RtpCapture.open()
        try:
            result = await run_sipp("uac_lost_ack.xml", gateway.address, tmp_path / "sipp",
                                    fill={"audio_file": str(caller_file), "codec_pt": "0",
                                          "codec": "PCMU", "capture_port": str(capture.port),
                                          "ack_delay_ms": "1000", "call_ms": "1500"},
                                    timeout_s=20)
        finally:
            await gateway.stop()
            capture.close()
        assert result.returncode == 0, result.explain()
        oks = re.findall(r"SIP/2\.0 200 OK.*?CSeq: 1 INVITE", result.messages, re.S)
        # T1 = 0.1 s: retransmissions at 0.1, 0.3 and 0.7 s fall inside the 1 s without ACK.
        assert len(oks) >= 4, result.messages
        assert len(handler.calls) == 1
        assert handler.calls[0]["closed"] == "hangup"

    asyncio.run(scenario())


def test_missing_ack_ends_the_call_with_bye_after_64_t1(tmp_path: Path) -> None:
    async def scenario() -> None:
        handler = RecordingHandler(np.zeros(800, np.float32))
        gateway = _gateway(handler, t1=0.05)  # 64*T1 = 3.2 s
        await gateway.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            result = await run_sipp("uac_no_ack.xml", gateway.address, tmp_path / "sipp", fill={
                "codec_pt": "0", "codec": "PCMU", "capture_port": str(free_udp_port()),
                "bye_timeout_ms": "10000"}, timeout_s=15)
        finally:
            await gateway.stop()
        assert result.returncode == 0, result.explain()
        assert loop.time() - started >= 3.2
        assert handler.calls == []  # never confirmed, never handed to the loop
        assert gateway.active_calls == 0

    asyncio.run(scenario())


def test_rfc2833_digits_from_sipp_pcaps_become_keypresses(tmp_path: Path) -> None:
    if not (PCAP_DIR / "dtmf_2833_1.pcap").exists():
        pytest.skip(f"SIPp's DTMF pcaps are not in {PCAP_DIR}")

    async def scenario() -> None:
        handler = RecordingHandler(np.zeros(800, np.float32))
        gateway = _gateway(handler)
        await gateway.start()
        try:
            result = await run_sipp("uac_dtmf.xml", gateway.address, tmp_path / "sipp", fill={
                "codec_pt": "0", "codec": "PCMU", "capture_port": str(free_udp_port()),
                "pcap_dir": str(PCAP_DIR), "digit1": "4", "digit2": "2", "digit3": "pound",
                "digit4": "star"}, timeout_s=20)
        finally:
            await gateway.stop()
        assert result.returncode == 0, result.explain()
        # Each pcap ends with three end-of-event packets: one key press each, no repeats.
        assert handler.calls[0]["digits"] == "42#*"

    asyncio.run(scenario())


async def run_load(handler: Callable[[Transport], Awaitable[None]], tmp_path: Path,
                   caller_audio: np.ndarray, calls: int = 50, concurrent: int = 10) -> None:
    """SIPp places ``calls`` calls, ``concurrent`` at a time, against a gateway running
    ``handler``; every call must complete. The handler is a parameter so the same load
    runs against the real call loop (and then every call must also be in the store)."""
    caller_file = tmp_path / "caller.ulaw"
    caller_file.write_bytes(g711_encode(caller_audio, "ulaw"))
    gateway = _gateway(handler, t1=0.5)
    await gateway.start()
    capture = await RtpCapture.open()
    try:
        result = await run_sipp("uac_audio.xml", gateway.address, tmp_path / "sipp", fill={
            "audio_file": str(caller_file), "codec_pt": "0", "codec": "PCMU",
            "capture_port": str(capture.port), "call_ms": "2000"},
            calls=calls, concurrent=concurrent, rate=5, timeout_s=90)
        await asyncio.sleep(0.5)
    finally:
        await gateway.stop()
        capture.close()
    assert result.returncode == 0, result.explain()
    assert re.search(rf"Successful call\s+\|\s+\d+\s+\|\s+{calls}\b", result.output), \
        result.output[-2000:]
    assert gateway.calls_answered == calls


def test_load_ten_concurrent_calls_fifty_in_total_all_complete(tmp_path: Path,
                                                              speech: dict) -> None:
    handler = RecordingHandler(speech["reply"][:8000])
    asyncio.run(run_load(handler, tmp_path, speech["caller"][:8000]))
    assert len(handler.calls) == 50
    assert {c["closed"] for c in handler.calls} == {"hangup"}
    assert all(len(c["audio"]) >= 8000 for c in handler.calls)
    assert len({c["info"].call_id for c in handler.calls}) == 50


def test_info_digit_and_reinvite_to_hold_are_answered_mid_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        handler = RecordingHandler(np.zeros(80000, np.float32))  # 10 s of "speech"
        gateway = _gateway(handler)
        await gateway.start()
        capture = await RtpCapture.open()
        try:
            result = await run_sipp("uac_info_hold.xml", gateway.address, tmp_path / "sipp",
                                    fill={"codec_pt": "0", "codec": "PCMU",
                                          "capture_port": str(capture.port)}, timeout_s=20)
            sent_before_bye = len(capture.packets)
        finally:
            await gateway.stop()
            capture.close()
        assert result.returncode == 0, result.explain()
        assert handler.calls[0]["digits"] == "7"
        # We sent for the first second only: on hold (the caller only sends) we stop, so the
        # second second of the call adds nothing.
        assert 40 <= sent_before_bye <= 65, sent_before_bye

    asyncio.run(scenario())


def test_load_through_the_real_call_loop_stores_every_call(tmp_path: Path, speech: dict,
                                                           config, assistant) -> None:
    """The same load against the real loop: 50 calls, 10 at a time, every one stored."""
    from training.store import CallStore
    from voice.service import CallService

    store = CallStore(config.database_url, config.audio_dir)

    async def scenario() -> CallService:
        service = CallService(config, assistant, store)
        await service.start()
        try:
            await run_load(service.handle, tmp_path, speech["caller"][:8000])
        finally:
            await service.stop()
        return service

    service = asyncio.run(scenario())
    assert service.handled == 50
    assert store.count()[0] == 50
