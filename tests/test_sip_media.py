"""RTP packets, the jitter buffer, RFC 4733 DTMF and the paced sender, on real packets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from asr.telephony import g711_decode, g711_encode
from voice.gateways.sip.dtmf import DtmfReceiver, TelephoneEvent, event_payloads
from voice.gateways.sip.rtp import FRAME, JitterBuffer, RtpPacket, RtpSession
from voice.gateways.sip.sdp import Negotiated
from voice.transport import Playout

PCAP_DIR = Path("/usr/share/sip-tester")


def _tone(n: int, hz: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(n) / 8000)).astype(np.float32)


def test_rtp_packet_round_trips_and_rejects_what_is_not_rtp() -> None:
    packet = RtpPacket(8, 65535, 2**32 - 80, 0xDEADBEEF, b"\xd5" * 160, marker=True)
    assert RtpPacket.parse(packet.encode()) == packet
    with pytest.raises(ValueError, match="shorter than an RTP header"):
        RtpPacket.parse(b"\x80\x00")
    with pytest.raises(ValueError, match="RTP version 0"):
        RtpPacket.parse(bytes(40))
    with pytest.raises(ValueError, match="longer than the packet"):
        RtpPacket.parse(b"\x8f" + bytes(20))  # claims 15 CSRCs


def test_jitter_buffer_reorders_and_plays_out_a_shuffled_stream_exactly() -> None:
    audio = _tone(FRAME * 50)
    frames = [(1000 + i * FRAME, audio[i * FRAME:(i + 1) * FRAME]) for i in range(50)]
    order = list(range(50))
    for i in range(3, 48, 3):  # swap neighbours: out-of-order arrival
        order[i], order[i + 1] = order[i + 1], order[i]
    buffer = JitterBuffer(delay_frames=3)
    out = []
    for step, index in enumerate(order):
        buffer.push(*frames[index])
        if step >= 2:
            out.append(buffer.pop())
    out += [buffer.pop() for _ in range(6)]
    played = np.concatenate(out)
    assert not played[:3 * FRAME].any()  # the three-frame playout delay
    np.testing.assert_array_equal(played[3 * FRAME:3 * FRAME + len(audio)], audio)


def test_jitter_buffer_fills_losses_with_silence_and_drops_late_packets() -> None:
    buffer = JitterBuffer(delay_frames=1)
    ones = np.ones(FRAME, np.float32)
    buffer.push(0, ones)
    assert not buffer.pop().any()  # the one-frame delay
    assert buffer.pop().all()
    assert not buffer.pop().any()  # frame 1 never came
    buffer.push(FRAME, ones)  # ...and arrives too late to play
    assert buffer.late == 1
    buffer.push(2 * FRAME, ones)
    assert buffer.pop().all()


def test_jitter_buffer_owes_skipped_ticks_only_once_playing_and_then_keeps_the_backlog(
        ) -> None:
    buffer = JitterBuffer(delay_frames=0, max_frames=5)
    buffer.owe(40)  # a stall before the first packet: nothing to owe
    assert buffer.owed == 0
    frames = [_tone(FRAME, 200.0 + 50 * k) for k in range(12)]
    buffer.push(0, frames[0])
    buffer.owe(10)  # the clock is 10 ticks ahead of the buffer
    for k in range(1, 12):  # 11 frames ahead of the next pop: past max_frames, but owed
        buffer.push(k * FRAME, frames[k])
    assert buffer.skipped == 0
    played = [buffer.pop() for _ in range(12)]
    assert buffer.owed == 0
    np.testing.assert_array_equal(np.concatenate(played), np.concatenate(frames))


def test_jitter_buffer_survives_timestamp_wraparound() -> None:
    buffer = JitterBuffer(delay_frames=0)
    start = 2**32 - 2 * FRAME
    for i in range(4):
        buffer.push((start + i * FRAME) % 2**32, np.full(FRAME, i + 1, np.float32))
    assert [int(buffer.pop()[0]) for _ in range(4)] == [1, 2, 3, 4]
    assert buffer.skipped == 0


def _pcap_rtp_payloads(path: Path) -> list[RtpPacket]:
    data = path.read_bytes()
    packets, offset = [], 24
    while offset + 16 <= len(data):
        length = int.from_bytes(data[offset + 8:offset + 12], "little")
        frame = data[offset + 16:offset + 16 + length]
        packets.append(RtpPacket.parse(frame[42:]))  # Ethernet + IPv4 + UDP headers
        offset += 16 + length
    return packets


def test_dtmf_receiver_reports_a_sipp_pcap_press_once_despite_end_retransmissions() -> None:
    path = PCAP_DIR / "dtmf_2833_7.pcap"
    if not path.exists():
        pytest.skip(f"SIPp's DTMF pcaps are not in {PCAP_DIR} (apt-get install sip-tester)")
    packets = _pcap_rtp_payloads(path)
    assert sum(TelephoneEvent.parse(p.payload).end for p in packets) == 3
    receiver = DtmfReceiver()
    digits = [d for p in packets for d in receiver.feed(p.timestamp, p.payload)]
    assert digits == ["7"]


def test_dtmf_press_whose_end_packets_were_lost_is_still_reported() -> None:
    receiver = DtmfReceiver()
    first = event_payloads("5")
    second = event_payloads("9")
    digits = [d for payload, _ in first[:-3] for d in receiver.feed(100, payload)]
    digits += [d for payload, _ in second for d in receiver.feed(900, payload)]
    assert digits == ["5", "9"]


def test_event_payloads_follow_rfc_4733() -> None:
    payloads = event_payloads("#", duration_ms=100)
    events = [TelephoneEvent.parse(p) for p, _ in payloads]
    assert [e.event for e in events] == [11] * 8
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert [m for _, m in payloads] == [True] + [False] * 7
    assert payloads[-1][0] == bytes([11, 0x80 | 10, 0x03, 0x20])


def test_sender_is_paced_at_20_ms_without_drift_and_sends_digits() -> None:
    async def scenario() -> tuple[list[tuple[float, RtpPacket]], Playout]:
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        media = Negotiated("127.0.0.1", listener.getsockname()[1], 0, "PCMU", 101)
        playout = Playout()
        playout.put(_tone(8000))
        session = RtpSession(sock, media, playout, lambda s: None, lambda d: None,
                             lambda: None, timeout_s=60)
        loop = asyncio.get_running_loop()
        got: list[tuple[float, RtpPacket]] = []
        await session.start()
        session.send_digits("1")
        end = loop.time() + 2.0
        while loop.time() < end:
            try:
                data = await asyncio.wait_for(loop.sock_recv(listener, 2048), 0.5)
            except TimeoutError:
                continue
            got.append((loop.time(), RtpPacket.parse(data)))
        await session.close()
        listener.close()
        return got, playout

    got, playout = asyncio.run(scenario())
    events = [p for _, p in got if p.payload_type == 101]
    audio = [(t, p) for t, p in got if p.payload_type == 0]
    assert len(events) == 8 and len({p.timestamp for p in events}) == 1
    assert all(TelephoneEvent.parse(p.payload).event == 1 for p in events)
    # 2 s at 50 packets per second, give or take the first and last tick.
    assert 97 <= len(got) <= 101
    span = audio[-1][0] - audio[0][0]
    assert span == pytest.approx((len(audio) - 1) * 0.02, abs=0.06)
    timestamps = [p.timestamp for _, p in got if p.payload_type == 0]
    steps = {(b - a) % 2**32 for a, b in zip(timestamps, timestamps[1:], strict=False)}
    assert steps == {FRAME}  # +160 per 20 ms frame, no gaps
    decoded = g711_decode(b"".join(p.payload for _, p in audio), "ulaw")
    expected = g711_decode(g711_encode(_tone(8000), "ulaw"), "ulaw")
    np.testing.assert_array_equal(decoded[:len(expected)][:1000], expected[:1000])
    assert playout.played == 8000  # the whole tone, then silence: only real audio counts
    assert len(audio) >= 50


def _drain(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


def test_symmetric_rtp_replies_to_where_the_callers_audio_comes_from() -> None:
    async def scenario() -> tuple[int, int]:
        caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # behind a "NAT"
        caller.bind(("127.0.0.1", 0))
        caller.setblocking(False)
        unreachable = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # what its SDP says
        unreachable.bind(("127.0.0.1", 0))
        unreachable.setblocking(False)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        media = Negotiated("127.0.0.1", unreachable.getsockname()[1], 0, "PCMU", None)
        session = RtpSession(sock, media, Playout(), lambda s: None, lambda d: None,
                             lambda: None, symmetric=True)
        await session.start()
        packet = RtpPacket(0, 1, 160, 7, b"\xff" * 160)
        caller.sendto(packet.encode(), ("127.0.0.1", session.port))
        await asyncio.sleep(0.3)
        await session.close()
        got, before = _drain(caller), _drain(unreachable)
        caller.close()
        unreachable.close()
        return got, before

    got, before = asyncio.run(scenario())
    assert got >= 10  # 0.3 s of our audio went back to the caller's real address
    assert before <= 2  # the SDP address got only what was sent before the first packet


def test_a_stalled_event_loop_delays_the_callers_audio_but_loses_none_of_it() -> None:
    # A garbage collection or a long parse on a loaded machine can hold the event loop
    # for most of a second; the caller's packets wait in the socket meanwhile.
    sent = _tone(8000 * 3, hz=310.0) * np.linspace(0.2, 1.0, 8000 * 3, dtype=np.float32)
    payload = g711_encode(sent, "ulaw")

    def send(port: int) -> None:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        start = time.monotonic()
        for i in range(len(payload) // FRAME):
            time.sleep(max(0.0, start + i * 0.02 - time.monotonic()))
            packet = RtpPacket(0, i, 1000 + i * FRAME, 99, payload[i * FRAME:(i + 1) * FRAME])
            sender.sendto(packet.encode(), ("127.0.0.1", port))
        sender.close()

    async def scenario() -> list[np.ndarray]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        heard: list[np.ndarray] = []
        media = Negotiated("127.0.0.1", 9, 0, "PCMU", None)
        session = RtpSession(sock, media, Playout(), heard.append, lambda d: None,
                             lambda: None, timeout_s=60)
        await session.start()
        thread = threading.Thread(target=send, args=(session.port,))
        thread.start()
        await asyncio.sleep(1.0)
        time.sleep(0.8)  # the stall: nothing on the loop runs, 40 frames pile up
        await asyncio.sleep(2.6)
        thread.join()
        await session.close()
        return heard

    heard = np.concatenate(asyncio.run(scenario()))
    expected = g711_decode(payload, "ulaw")
    expected = expected[np.flatnonzero(expected)[0]:]
    first = int(np.flatnonzero(heard)[0])
    np.testing.assert_array_equal(heard[first:first + len(expected)], expected)
