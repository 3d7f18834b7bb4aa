"""The AudioSocket gateway against an emulated Asterisk: real loopback TCP, real speech."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest

from asr.audio import resample, to_int16
from tests.telephony_peers import (
    EmulatedAsterisk,
    RecordingHandler,
    first_sound,
    heard_pcm,
    run,
    speech,
)
from voice.gateways.audiosocket import (
    AudioSocketGateway,
    Frame,
    TruncatedFrame,
    caller_from_uuid,
    encode_frame,
    read_frame,
)
from voice.gateways.line import FrameClock
from voicedesk.config import TelephonyConfig

CALLER_TEXT = "my account number is one two three four"
REPLY_TEXT = "thank you, I have found your account"


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("speech")
    return {"caller": speech(CALLER_TEXT, folder), "reply": speech(REPLY_TEXT, folder)}


async def started(handler: RecordingHandler, config: TelephonyConfig | None = None,
                  **options: Any) -> AudioSocketGateway:
    gateway = AudioSocketGateway(config or TelephonyConfig(), handler, "127.0.0.1", 0, **options)
    await gateway.start()
    return gateway


async def settle(gateway: AudioSocketGateway, timeout: float = 3.0) -> None:
    """Wait until the gateway has no call in progress."""
    for _ in range(int(timeout / 0.02)):
        if gateway.active_calls == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{gateway.active_calls} call(s) still active after {timeout} s")


def contains_exactly(heard: np.ndarray, sent: np.ndarray) -> bool:
    """Whether ``sent`` (int16) appears sample for sample in ``heard``, after leading silence."""
    offset = first_sound(heard) - first_sound(sent)
    return offset >= 0 and np.array_equal(heard[offset:offset + len(sent)], sent)


# --- the frame codec ------------------------------------------------------------------------


def test_frames_are_parsed_whatever_way_tcp_splits_or_merges_them() -> None:
    wire = (encode_frame(0x01, uuid.UUID(int=7).bytes) + encode_frame(0x10, bytes(320))
            + encode_frame(0x03, b"5") + encode_frame(0x00))

    async def parse(pieces: list[bytes]) -> list[Frame | None]:
        reader = asyncio.StreamReader()
        for piece in pieces:
            reader.feed_data(piece)
        reader.feed_eof()
        return [await read_frame(reader) for _ in range(5)]

    expected = [Frame(0x01, uuid.UUID(int=7).bytes), Frame(0x10, bytes(320)), Frame(0x03, b"5"),
                Frame(0x00, b""), None]
    assert run(parse([wire])) == expected
    assert run(parse([wire[i:i + 1] for i in range(len(wire))])) == expected
    assert run(parse([wire[:2], wire[2:200], wire[200:]])) == expected


def test_a_frame_cut_off_by_the_socket_closing_is_reported_as_truncated() -> None:
    async def parse(data: bytes) -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        await read_frame(reader)

    with pytest.raises(TruncatedFrame, match="100 of 320 payload bytes"):
        run(parse(bytes([0x10, 0x01, 0x40]) + bytes(100)))
    with pytest.raises(TruncatedFrame, match="2 of 3 header bytes"):
        run(parse(bytes([0x10, 0x01])))


def test_a_dialplan_can_pass_the_caller_number_inside_the_uuid() -> None:
    assert caller_from_uuid(uuid.UUID("3b7e5c1a-2f4d-ca11-ffff-f15551234567")) == "15551234567"
    assert caller_from_uuid(uuid.UUID("3b7e5c1a-2f4d-ca11-ffff-ffffffffffff")) == ""
    assert caller_from_uuid(uuid.UUID("3b7e5c1a-2f4d-4a11-8fff-f15551234567")) == ""
    assert all(caller_from_uuid(uuid.uuid4()) == "" for _ in range(200))


def test_the_frame_clock_keeps_its_schedule_when_each_tick_does_work() -> None:
    async def ticks() -> float:
        clock = FrameClock(0.01)
        started = time.monotonic()
        for _ in range(50):
            await clock.wait()
            await asyncio.sleep(0.004)  # encoding and writing a frame takes time too
        return time.monotonic() - started

    assert run(ticks()) == pytest.approx(0.5, abs=0.03)  # not 50 x (10 + 4) ms


# --- calls ------------------------------------------------------------------------------------


def test_caller_audio_reaches_the_call_exactly_and_the_reply_plays_back(voices) -> None:
    call_uuid = uuid.UUID("3b7e5c1a-2f4d-ca11-ffff-f15551234567")

    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway = await started(handler)
        asterisk = EmulatedAsterisk(*gateway.address, call_uuid=call_uuid)
        await asterisk.connect()
        await asterisk.stream(voices["caller"], after_s=0.4)
        asterisk.hang_up()
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return handler, asterisk

    handler, asterisk = run(scenario())
    (call,) = handler.calls
    assert call.info.call_id == str(call_uuid)
    assert call.info.channel == "audiosocket"
    assert call.info.caller_id == "15551234567"
    assert call.info.sample_rate == 8000
    assert call.closed == "hangup" and call.closed_again
    sent = to_int16(voices["caller"])
    assert np.array_equal(heard_pcm(call.samples[:len(sent)]), sent)
    assert contains_exactly(asterisk.pcm, to_int16(voices["reply"]))
    assert call.played_s == pytest.approx(len(voices["reply"]) / 8000, abs=0.001)
    assert asterisk.audio_kinds == {0x10} and asterisk.other_kinds == []
    assert {len(p) for p in asterisk.received} == {320}


def test_the_reply_is_paced_at_real_time(voices) -> None:
    async def scenario() -> EmulatedAsterisk:
        gateway = await started(RecordingHandler(reply=voices["reply"]))
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        await asterisk.stream(np.zeros(0, np.float32), after_s=1.5)
        asterisk.hang_up()
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return asterisk

    asterisk = run(scenario())
    times = np.array(asterisk.arrivals)
    window = times[(times > times[0] + 0.2) & (times <= times[0] + 1.2)]
    assert 45 <= len(window) <= 55  # 50 frames a second, not a burst
    assert np.median(np.diff(times)) == pytest.approx(0.02, abs=0.005)


def test_keys_reach_the_call_and_the_server_can_hang_up(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk]:
        handler = RecordingHandler()
        gateway = await started(handler)
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        keys = {10: "1", 15: "2", 20: "3", 25: "4", 30: "A", 35: "#"}
        await asterisk.stream(voices["caller"][:8000], dtmf=keys, after_s=2.0)
        await asyncio.wait_for(asterisk.hung_up.wait(), 2.0)
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return handler, asterisk

    handler, asterisk = run(scenario())
    (call,) = handler.calls
    assert call.keys == ["1", "2", "3", "4", "A", "#"]
    assert call.closed == "hangup"
    assert asterisk.hung_up.is_set() and asterisk.other_kinds == []


def test_clearing_stops_the_reply_at_once_and_played_time_says_what_was_heard(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway = await started(handler)
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        await asterisk.stream(np.zeros(0, np.float32), dtmf={40: "*"}, after_s=1.5)
        asterisk.hang_up()
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return handler, asterisk

    handler, asterisk = run(scenario())
    (call,) = handler.calls
    assert call.played_at_clear == pytest.approx(0.8, abs=0.15)
    assert call.played_s == pytest.approx(call.played_at_clear, abs=0.04)
    heard = asterisk.pcm
    reply = to_int16(voices["reply"])
    sound = np.flatnonzero(heard)
    assert (sound[-1] - sound[0]) / 8000 < call.played_s + 0.02  # nothing after the clear
    assert len(sound) < np.count_nonzero(reply) * 0.6


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Webhook", (_Webhook,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/summary", received
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_transfer_posts_the_summary_then_hands_the_channel_back(voices, webhook) -> None:
    url, received = webhook

    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk]:
        handler = RecordingHandler()
        gateway = await started(handler, TelephonyConfig(summary_webhook=url))
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        await asterisk.stream(voices["caller"][:4000], dtmf={10: "0"}, after_s=2.0)
        await asyncio.wait_for(asterisk.hung_up.wait(), 3.0)
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return handler, asterisk

    handler, asterisk = run(scenario())
    (call,) = handler.calls
    assert call.transferred is True and call.closed == "transferred"
    assert asterisk.hung_up.is_set() and asterisk.other_kinds == []
    (posted,) = received
    assert posted["event"] == "transfer" and posted["target"] == "sip:agents@pbx.example"
    assert posted["call_id"] == str(asterisk.uuid) and posted["channel"] == "audiosocket"
    assert posted["summary"] == {"text": "caller wants an agent"}


def test_a_16_khz_line_is_answered_at_16_khz(voices) -> None:
    caller16 = resample(voices["caller"][:9600], 8000, 16000)

    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk]:
        handler = RecordingHandler(reply=resample(voices["reply"], 8000, 16000))
        gateway = await started(handler)
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        await asterisk.stream(caller16, kind=0x12, after_s=0.2)
        asterisk.hang_up()
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return handler, asterisk

    handler, asterisk = run(scenario())
    (call,) = handler.calls
    assert call.info.sample_rate == 16000
    assert np.array_equal(heard_pcm(call.samples[:len(caller16)]), to_int16(caller16))
    assert asterisk.audio_kinds == {0x12} and {len(p) for p in asterisk.received} == {640}


# --- bad input --------------------------------------------------------------------------------


def test_malformed_frames_are_dropped_and_the_call_goes_on(voices, caplog) -> None:
    async def scenario() -> RecordingHandler:
        handler = RecordingHandler()
        gateway = await started(handler)
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        asterisk.send_raw(bytes([0x10, 0x0F, 0xA0]) + bytes(4000))  # 250 ms in one frame
        asterisk.send_raw(bytes([0x10, 0x00, 0x03]) + bytes(3))  # half a sample
        asterisk.send_raw(bytes([0x42, 0x00, 0x02]) + b"??")  # no such kind
        asterisk.send_raw(bytes([0x03, 0x00, 0x01]) + b"x")  # not a DTMF digit
        asterisk.send_raw(bytes([0xFF, 0x00, 0x01]) + b"\x02")  # Asterisk's error kind
        await asterisk.stream(voices["caller"][:9600], dtmf={5: "9"})
        asterisk.hang_up()
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return handler

    handler = run(scenario())
    (call,) = handler.calls
    assert np.array_equal(heard_pcm(call.samples), to_int16(voices["caller"][:9600]))
    assert call.keys == ["9"] and call.closed == "hangup"
    assert "longer than 200 ms" in caplog.text and "unknown frame kind 0x42" in caplog.text


def test_a_truncated_frame_ends_that_call_but_not_a_concurrent_one(voices, caplog) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk, AudioSocketGateway]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway = await started(handler)
        good = EmulatedAsterisk(*gateway.address)
        bad = EmulatedAsterisk(*gateway.address)
        await good.connect()
        await bad.connect()
        good_call = asyncio.create_task(good.stream(voices["caller"], after_s=0.3))
        await bad.stream(voices["caller"][:2400])
        bad.send_raw(bytes([0x10, 0x01, 0x40]) + bytes(100))
        bad.half_close()
        await asyncio.wait_for(bad.hung_up.wait(), 2.0)
        await bad.close()
        await good_call
        good.hang_up()
        await settle(gateway)
        await good.close()
        await gateway.stop()
        return handler, good, gateway

    handler, good, gateway = run(scenario())
    by_id = {c.info.call_id: c for c in handler.calls}
    assert by_id[str(good.uuid)].closed == "hangup"
    assert [c.closed for c in handler.calls if c.info.call_id != str(good.uuid)] == ["error"]
    sent = to_int16(voices["caller"])
    assert np.array_equal(heard_pcm(by_id[str(good.uuid)].samples[:len(sent)]), sent)
    assert contains_exactly(good.pcm, to_int16(voices["reply"]))
    assert "truncated AudioSocket frame" in caplog.text


def test_a_peer_that_vanishes_mid_call_ends_only_its_call(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway = await started(handler)
        good = EmulatedAsterisk(*gateway.address)
        gone = EmulatedAsterisk(*gateway.address)
        await good.connect()
        await gone.connect()
        good_call = asyncio.create_task(good.stream(voices["caller"], after_s=0.3))
        await gone.stream(voices["caller"][:4000])
        gone.vanish()
        await good_call
        good.hang_up()
        await settle(gateway)
        await good.close()
        await gone.close()
        await gateway.stop()
        return handler, good

    handler, good = run(scenario())
    closed = {c.info.call_id: c.closed for c in handler.calls}
    assert closed[str(good.uuid)] == "hangup"
    assert len(closed) == 2 and set(closed.values()) <= {"hangup", "error"}
    assert contains_exactly(good.pcm, to_int16(voices["reply"]))


def test_a_silent_peer_times_out() -> None:
    async def scenario() -> RecordingHandler:
        handler = RecordingHandler()
        gateway = await started(handler, idle_timeout_s=0.5)
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()  # the call id, then nothing: a peer gone without a FIN
        await asyncio.wait_for(asterisk.hung_up.wait(), 4.0)
        await settle(gateway)
        await asterisk.close()
        await gateway.stop()
        return handler

    (call,) = run(scenario()).calls
    assert call.closed == "timeout"


def test_a_connection_that_does_not_start_with_a_call_id_is_refused(caplog) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk]:
        handler = RecordingHandler()
        gateway = await started(handler)
        stranger = EmulatedAsterisk(*gateway.address)
        await stranger.connect(send_uuid=False)
        stranger.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(stranger.hung_up.wait(), 2.0)
        await stranger.close()
        await gateway.stop()
        return handler, stranger

    handler, stranger = run(scenario())
    assert handler.calls == [] and stranger.received == []
    assert "expected the 16-byte call id" in caplog.text


def test_stopping_the_gateway_hangs_up_calls_in_progress(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAsterisk, int]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway = await started(handler)
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        streaming = asyncio.create_task(asterisk.stream(voices["caller"]))
        await asyncio.wait_for(handler.started.wait(), 3.0)
        during = gateway.active_calls
        await gateway.stop()
        await asyncio.wait_for(asterisk.hung_up.wait(), 2.0)
        await streaming
        await asterisk.close()
        return handler, asterisk, during

    handler, asterisk, during = run(scenario())
    assert during == 1
    assert handler.calls[0].closed == "hangup" and asterisk.hung_up.is_set()


def test_a_handler_that_fails_is_logged_and_its_call_hung_up(voices, caplog) -> None:
    async def broken(transport: Any) -> None:
        raise RuntimeError("the call loop broke")

    async def scenario() -> EmulatedAsterisk:
        gateway = AudioSocketGateway(TelephonyConfig(), broken, "127.0.0.1", 0)
        await gateway.start()
        asterisk = EmulatedAsterisk(*gateway.address)
        await asterisk.connect()
        await asterisk.stream(voices["caller"][:1600])
        await asyncio.wait_for(asterisk.hung_up.wait(), 2.0)
        await asterisk.close()
        await gateway.stop()
        return asterisk

    assert run(scenario()).hung_up.is_set()
    assert "the call handler failed" in caplog.text and "the call loop broke" in caplog.text

