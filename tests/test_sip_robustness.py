"""Bad input never takes the gateway down: RFC 4475 torture messages, garbage RTP, a caller
that vanishes mid-call. Each is answered or dropped while a real SIPp call carries on."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import struct
from pathlib import Path

import pytest

from asr.telephony import g711_decode, g711_encode
from tests.sip.peers import (
    NEED_SIPP,
    SIPP,
    RecordingHandler,
    RtpCapture,
    match_fraction,
    run_sipp,
)
from tests.test_sip_calls import _gateway, speech  # noqa: F401

TORTURE = Path(__file__).parent / "sip" / "torture"

# What a user-agent server answers to each torture message (RFC 4475 3.1), by first status.
EXPECTED_FIRST_REPLY = {
    "wsinv": 481,  # its To has a tag: a re-INVITE for a dialog we do not have
    "esc01": 100, "longreq": 100, "baddate": 100,  # valid INVITEs: Trying
    "lwsdisp": 200, "semiuri": 200, "transports": 200,  # valid OPTIONS
    "intmeth": 501, "esc02": 501,  # valid, but methods nobody implements
    "escnull": 405,  # a valid REGISTER: we are no registrar
    "badvers": 505,
    **{name: 400 for name in (
        "badinv01", "clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart",
        "trws", "escruri", "regbadct", "badaspec", "baddn", "mismatch01", "mismatch02",
        "insuf", "mcl01", "multi01")},
    **{name: None for name in ("unreason", "noreason", "scalarlg", "bigcode")},  # responses
}


def _garbage_rtp() -> list[bytes]:
    """Datagrams that are not the caller's audio: noise, truncations, RTCP, STUN, bad headers."""
    rng = random.Random(4733)
    out = [bytes([rng.randrange(0, 0x40)]) + rng.randbytes(rng.randrange(0, 300))
           for _ in range(200)]  # version 0 noise
    out += [b"", b"\x80", b"\x80\x00\x00", bytes(11)]  # shorter than a header
    out += [b"\x8f\x00" + bytes(30)]  # claims 15 CSRCs it does not carry
    out += [b"\x90\x00" + bytes(10) + b"\x00\x00\xff\xff"]  # extension longer than the packet
    out += [b"\xa0\x00" + bytes(10) + b"\xff"]  # padding longer than the packet
    out += [struct.pack("!BBHII", 0x80, 200, 6, 1, 2) + bytes(20)]  # an RTCP sender report
    out += [b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)]  # a STUN binding request
    out += [struct.pack("!BBHII", 0x80, 13, 1, 1, 3) + b"\x40"]  # comfort noise: not our codec
    return out


def _identity(message: bytes) -> bytes:
    """What our reply to ``message`` must contain: its Call-ID, or its CSeq if it has none."""
    found = re.search(rb"^(?:Call-ID|i)\s*:\s*(\S+)", message, re.M | re.I)
    if found:
        return found.group(1)
    return re.search(rb"^CSeq\s*:\s*(.+?)\r", message, re.M).group(1)


async def _first_reply(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                       identity: bytes) -> int | None:
    """The status of the first response about ``identity`` within half a second."""
    deadline = loop.time() + 0.5
    while (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
        except TimeoutError:
            break
        status = re.match(rb"SIP/\d\.\d (\d{3}) ", data)
        if status and identity in data:
            return int(status.group(1))
    return None


pytestmark = pytest.mark.skipif(SIPP is None, reason=NEED_SIPP)


def test_torture_messages_and_garbage_rtp_do_not_disturb_a_live_call(
        tmp_path: Path, speech: dict) -> None:  # noqa: F811
    async def scenario() -> tuple[dict[str, int | None], object, dict, int]:
        caller_file = tmp_path / "caller.ulaw"
        caller_file.write_bytes(g711_encode(speech["caller"], "ulaw"))
        handler = RecordingHandler(speech["reply"])
        gateway = _gateway(handler, t1=0.1)
        await gateway.start()
        capture = await RtpCapture.open()
        replies: dict[str, int | None] = {}
        try:
            call = asyncio.create_task(run_sipp(
                "uac_audio.xml", gateway.address, tmp_path / "sipp", fill={
                    "audio_file": str(caller_file), "codec_pt": "0", "codec": "PCMU",
                    "capture_port": str(capture.port),
                    "call_ms": str(int(len(speech["reply"]) / 8 + 2500))}, timeout_s=40))
            while not handler.calls:
                await asyncio.sleep(0.05)
            rtp_port = handler.calls[0]["line"].rtp.port
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            for packet in _garbage_rtp():
                sock.sendto(packet, ("127.0.0.1", rtp_port))
            for name in EXPECTED_FIRST_REPLY:
                message = (TORTURE / f"{name}.dat").read_bytes()
                sock.sendto(message, gateway.address)
                replies[name] = await _first_reply(loop, sock, _identity(message))
            sock.close()
            result = await call
            malformed = gateway.malformed
        finally:
            await gateway.stop()
            capture.close()
        return replies, result, handler.calls[0], malformed

    replies, result, call, malformed = asyncio.run(scenario())
    assert replies == EXPECTED_FIRST_REPLY
    assert malformed == sum(1 for n, s in EXPECTED_FIRST_REPLY.items()
                            if s in (400, 505) or n in ("scalarlg", "bigcode"))
    assert result.returncode == 0, result.explain()  # type: ignore[attr-defined]
    assert call["closed"] == "hangup"
    assert call["line"].rtp.bad_packets == len(_garbage_rtp())  # each one refused, no more
    # Not one garbage datagram became audio: the caller's recording arrived sample-exact
    # (give or take a frame or two that a loaded machine delivered late).
    expected = g711_decode(g711_encode(speech["caller"], "ulaw"), "ulaw")
    assert match_fraction(call["audio"], expected) >= 0.95


def test_caller_that_vanishes_times_out_while_another_call_completes(
        tmp_path: Path, speech: dict) -> None:  # noqa: F811
    async def scenario() -> tuple[RecordingHandler, object, object]:
        caller_file = tmp_path / "caller.ulaw"
        caller_file.write_bytes(g711_encode(speech["caller"], "ulaw"))
        handler = RecordingHandler(speech["reply"])
        gateway = _gateway(handler, t1=0.05, rtp_timeout_s=2.0)
        await gateway.start()
        capture = await RtpCapture.open()
        fill = {"audio_file": str(caller_file), "codec_pt": "0", "codec": "PCMU",
                "capture_port": str(capture.port)}
        try:
            vanish, normal = await asyncio.gather(
                run_sipp("uac_vanish.xml", gateway.address, tmp_path / "vanish",
                         fill={**fill, "call_ms": "300"}, timeout_s=20),
                run_sipp("uac_audio.xml", gateway.address, tmp_path / "normal",
                         fill={**fill, "call_ms": "3000"}, timeout_s=20))
            await asyncio.sleep(0.3)
        finally:
            await gateway.stop()
            capture.close()
        return handler, vanish, normal

    handler, vanish, normal = asyncio.run(scenario())
    assert vanish.returncode == 0, vanish.explain()  # type: ignore[attr-defined]
    assert normal.returncode == 0, normal.explain()  # type: ignore[attr-defined]
    reasons = sorted(c["closed"] for c in handler.calls)
    assert reasons == ["hangup", "timeout"]
    gone = next(c for c in handler.calls if c["closed"] == "timeout")
    # Ended 2 s after its last packet: more than the timeout, less than it plus the stream.
    assert 2.0 <= len(gone["audio"]) / 8000 <= len(speech["caller"]) / 8000 + 3.5
