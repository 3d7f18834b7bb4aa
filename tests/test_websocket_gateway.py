"""The WebSocket gateway against an emulated Twilio and an emulated raw-PCM audio fork."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest

from asr.audio import resample, to_int16
from asr.telephony import g711_decode, g711_encode
from tests.telephony_peers import (
    EmulatedAudioFork,
    EmulatedTwilio,
    RecordingHandler,
    first_sound,
    heard_pcm,
    run,
    speech,
)
from voice.gateways.websocket import WebSocketGateway
from voicedesk.config import TelephonyConfig

CALLER_TEXT = "my account number is one two three four"
REPLY_TEXT = "thank you, I have found your account"


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("speech")
    return {"caller": speech(CALLER_TEXT, folder), "reply": speech(REPLY_TEXT, folder)}


def mulaw(samples: np.ndarray) -> np.ndarray:
    """What survives one trip through G.711 mu-law: the exact audio either side can expect."""
    return g711_decode(g711_encode(samples, "ulaw"), "ulaw")


async def started(handler: Any, config: TelephonyConfig | None = None,
                  **options: Any) -> tuple[WebSocketGateway, str]:
    gateway = WebSocketGateway(config or TelephonyConfig(), handler, "127.0.0.1", 0, **options)
    await gateway.start()
    host, port = gateway.address
    return gateway, f"ws://{host}:{port}/media"


async def settle(gateway: WebSocketGateway, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if gateway.active_calls == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{gateway.active_calls} call(s) still active after {timeout} s")


async def until(condition: Any, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def aligned(heard: np.ndarray, sent: np.ndarray) -> np.ndarray:
    """``heard`` from where ``sent`` starts in it (both float), for a sample-exact compare."""
    offset = first_sound(to_int16(heard)) - first_sound(to_int16(sent))
    assert offset >= 0, "the reply starts before its own first sound"
    return heard[offset:offset + len(sent)]


# --- Twilio Media Streams ---------------------------------------------------------------------


def test_a_twilio_call_hears_the_caller_and_twilio_plays_the_reply(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedTwilio]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway, url = await started(handler)
        twilio = EmulatedTwilio(url, call_sid="CA42", stream_sid="MZ42",
                                parameters={"From": "+15551234567"})
        await twilio.connect()
        await twilio.stream(voices["caller"], dtmf={20: "4", 30: "2"}, after_s=0.5)
        await twilio.stop()
        await settle(gateway)
        await twilio.close()
        await gateway.stop()
        return handler, twilio

    handler, twilio = run(scenario())
    (call,) = handler.calls
    assert call.info.call_id == "MZ42" and call.info.channel == "websocket"
    assert call.info.caller_id == "+15551234567" and call.info.sample_rate == 8000
    assert call.info.metadata["call_sid"] == "CA42"
    assert call.closed == "hangup" and call.closed_again and call.keys == ["4", "2"]
    expected = mulaw(voices["caller"])
    assert np.array_equal(call.samples[:len(expected)], expected)
    reply = mulaw(voices["reply"])
    assert np.array_equal(aligned(twilio.heard_samples, reply), reply)
    assert call.played_s == pytest.approx(len(reply) / 8000, abs=0.001)
    assert twilio.most_buffered <= 0.5 * 8000  # sent a little ahead, never all at once
    assert twilio.unexpected == []


def test_played_time_advances_only_when_twilio_echoes_a_mark(voices) -> None:
    async def scenario() -> tuple[list[float], list[float], EmulatedTwilio]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway, url = await started(handler)
        twilio = EmulatedTwilio(url)
        twilio.paused = True  # Twilio's buffer holds the audio; nothing has played yet
        await twilio.connect()
        caller = asyncio.create_task(twilio.stream(np.zeros(0, np.float32), after_s=1.6))
        await asyncio.wait_for(handler.started.wait(), 2.0)
        transport = handler.transports[0]
        await asyncio.sleep(0.6)
        stalled = [transport.played_s, transport.pending_s]
        twilio.paused = False
        await asyncio.sleep(0.6)
        playing = [transport.played_s, transport.pending_s]
        await caller
        await twilio.stop()
        await settle(gateway)
        await twilio.close()
        await gateway.stop()
        return stalled, playing, twilio

    stalled, playing, twilio = run(scenario())
    reply_s = len(voices["reply"]) / 8000
    assert stalled[0] == 0.0 and stalled[1] == pytest.approx(reply_s, abs=0.001)
    assert playing[0] == pytest.approx(0.6, abs=0.15)
    assert playing[0] + playing[1] == pytest.approx(reply_s, abs=0.001)
    assert len(twilio.marks_echoed) >= 4


def test_barge_in_sends_clear_and_counts_only_what_twilio_played(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedTwilio]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway, url = await started(handler)
        twilio = EmulatedTwilio(url)
        await twilio.connect()
        await twilio.stream(np.zeros(0, np.float32), dtmf={40: "*"}, after_s=1.6)
        await twilio.stop()
        await settle(gateway)
        await twilio.close()
        await gateway.stop()
        return handler, twilio

    handler, twilio = run(scenario())
    (call,) = handler.calls
    heard_s = len(twilio.heard_samples) / 8000
    assert twilio.clears == 1
    assert heard_s == pytest.approx(0.8, abs=0.15)
    assert heard_s - 0.12 <= call.played_s <= heard_s  # a mark every 100 ms
    assert call.played_s == pytest.approx(call.played_at_clear, abs=0.001)


def test_clear_before_anything_was_sent_sends_nothing(voices) -> None:
    async def scenario() -> EmulatedTwilio:
        gateway, url = await started(RecordingHandler())
        twilio = EmulatedTwilio(url)
        await twilio.connect()
        await twilio.stream(np.zeros(0, np.float32), dtmf={5: "*"}, after_s=0.4)
        await twilio.stop()
        await settle(gateway)
        await twilio.close()
        await gateway.stop()
        return twilio

    twilio = run(scenario())
    assert twilio.clears == 0 and twilio.heard == []


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    server = HTTPServer(("127.0.0.1", 0), type("Webhook", (_Webhook,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/summary", received
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_twilio_transfer_posts_the_summary_and_ends_the_stream(voices, webhook) -> None:
    url_hook, received = webhook

    async def scenario() -> tuple[RecordingHandler, EmulatedTwilio]:
        handler = RecordingHandler()
        gateway, url = await started(handler, TelephonyConfig(summary_webhook=url_hook))
        twilio = EmulatedTwilio(url, call_sid="CA7", stream_sid="MZ7",
                                parameters={"caller_id": "5550100"})
        await twilio.connect()
        await twilio.stream(voices["caller"][:4000], dtmf={10: "0"}, after_s=2.0)
        await asyncio.wait_for(twilio.closed.wait(), 3.0)
        await settle(gateway)
        await twilio.close()
        await gateway.stop()
        return handler, twilio

    handler, twilio = run(scenario())
    (call,) = handler.calls
    assert call.transferred is True and call.closed == "transferred"
    (posted,) = received
    assert posted["call_id"] == "MZ7" and posted["caller_id"] == "5550100"
    assert posted["metadata"]["call_sid"] == "CA7"
    assert posted["target"] == "sip:agents@pbx.example"


# --- raw PCM (jambonz listen, FreeSWITCH audio fork) ------------------------------------------


def test_a_raw_pcm_fork_streams_both_ways_at_the_rate_its_metadata_gives(voices) -> None:
    caller16 = resample(voices["caller"], 8000, 16000)
    reply16 = resample(voices["reply"], 8000, 16000)

    async def scenario() -> tuple[RecordingHandler, EmulatedAudioFork]:
        handler = RecordingHandler(reply=reply16)
        gateway, url = await started(handler)
        fork = EmulatedAudioFork(url, {"callSid": "jb-1", "from": "+15550001111",
                                       "sampleRate": 16000, "mixType": "mono"})
        await fork.connect()
        await fork.stream(caller16, dtmf={25: "7", 30: "#"}, after_s=2.0)
        await asyncio.wait_for(fork.closed.wait(), 3.0)
        await settle(gateway)
        await fork.close()
        await gateway.stop()
        return handler, fork

    handler, fork = run(scenario())
    (call,) = handler.calls
    assert call.info.call_id == "jb-1" and call.info.caller_id == "+15550001111"
    assert call.info.sample_rate == 16000 and call.info.metadata["protocol"] == "audio-fork"
    assert call.keys == ["7", "#"] and call.closed == "hangup"
    assert np.array_equal(heard_pcm(call.samples[:25 * 320]), to_int16(caller16[:25 * 320]))
    sent = fork.pcm
    assert len(sent) / 16000 == pytest.approx(call.played_s, abs=0.001)
    expected = to_int16(reply16)[:len(sent)]
    assert np.array_equal(sent, expected)  # the reply from its start, cut by our hang-up


def test_raw_pcm_replies_are_paced_at_real_time(voices) -> None:
    async def scenario() -> EmulatedAudioFork:
        gateway, url = await started(RecordingHandler(reply=voices["reply"]))
        fork = EmulatedAudioFork(url, {"callSid": "jb-2"})
        await fork.connect()
        await fork.stream(np.zeros(0, np.float32), after_s=1.4)
        await fork.close()
        await settle(gateway)
        await gateway.stop()
        return fork

    fork = run(scenario())
    times = np.array(fork.arrivals)
    assert {len(p) for p in fork.received} == {320}
    window = times[(times > times[0] + 0.2) & (times <= times[0] + 1.2)]
    assert 45 <= len(window) <= 55


def test_raw_pcm_barge_in_sends_kill_audio_and_stops_sending(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAudioFork]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway, url = await started(handler)
        fork = EmulatedAudioFork(url, {"uuid": "fs-9", "caller_id": "100"})
        await fork.connect()
        await fork.stream(np.zeros(0, np.float32), dtmf={30: "*"}, after_s=1.2)
        await fork.close()
        await settle(gateway)
        await gateway.stop()
        return handler, fork

    handler, fork = run(scenario())
    (call,) = handler.calls
    assert call.info.call_id == "fs-9" and call.info.caller_id == "100"
    assert {"type": "killAudio"} in fork.commands
    assert len(fork.pcm) / 8000 == pytest.approx(call.played_s, abs=0.001)
    assert call.played_s == pytest.approx(0.6, abs=0.12)


# --- bad input --------------------------------------------------------------------------------


def test_invalid_json_and_bad_media_mid_call_are_logged_and_skipped(voices, caplog) -> None:
    async def scenario() -> RecordingHandler:
        handler = RecordingHandler()
        gateway, url = await started(handler)
        twilio = EmulatedTwilio(url)
        await twilio.connect()
        await twilio.send("{not json")
        await twilio.send("[1, 2]")
        await twilio.send({"event": "media", "streamSid": "MZ0001",
                           "media": {"payload": "%%% not base64 %%%"}})
        await twilio.send({"event": "dtmf", "streamSid": "MZ0001", "dtmf": {"digit": "X"}})
        await twilio.send({"event": "surprise"})
        await twilio.stream(voices["caller"][:9600], dtmf={3: "5"})
        await twilio.stop()
        await settle(gateway)
        await twilio.close()
        await gateway.stop()
        return handler

    (call,) = run(scenario()).calls
    assert np.array_equal(call.samples, mulaw(voices["caller"][:9600]))
    assert call.keys == ["5"] and call.closed == "hangup"
    assert "invalid JSON" in caplog.text and "not base64" in caplog.text


@pytest.mark.parametrize("opening", ["{broken", b"\x00\x01" * 160, '["a list"]',
                                     '{"sampleRate": 11025}'])
def test_a_stream_that_opens_wrongly_is_refused_and_the_server_carries_on(opening, voices,
                                                                         caplog) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedAudioFork, EmulatedTwilio]:
        handler = RecordingHandler()
        gateway, url = await started(handler)
        stranger = EmulatedAudioFork(url, {})
        await stranger.connect(opening=opening)
        await asyncio.wait_for(stranger.closed.wait(), 2.0)
        twilio = EmulatedTwilio(url)
        await twilio.connect()
        await twilio.stream(voices["caller"][:1600])
        await twilio.stop()
        await settle(gateway)
        await twilio.close()
        await stranger.close()
        await gateway.stop()
        return handler, stranger, twilio

    handler, stranger, twilio = run(scenario())
    assert [c.info.metadata["protocol"] for c in handler.calls] == ["twilio"]
    assert stranger.closed.is_set() and "closed" in caplog.text


def test_a_vanished_peer_and_an_oversized_message_end_only_their_own_calls(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedTwilio]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway, url = await started(handler)
        good = EmulatedTwilio(url, stream_sid="MZgood", call_sid="CAgood")
        gone = EmulatedTwilio(url, stream_sid="MZgone", call_sid="CAgone")
        huge = EmulatedAudioFork(url, {"callSid": "huge"})
        for peer in (good, gone, huge):
            await peer.connect()
        good_call = asyncio.create_task(good.stream(voices["caller"], after_s=0.3))
        await gone.stream(voices["caller"][:3200])
        gone.vanish()
        await huge.send(bytes(400_000))
        await asyncio.wait_for(huge.closed.wait(), 2.0)
        await good_call
        await good.stop()
        await settle(gateway)
        for peer in (good, gone, huge):
            await peer.close()
        await gateway.stop()
        return handler, good

    handler, good = run(scenario())
    closed = {c.info.call_id: c.closed for c in handler.calls}
    assert closed["MZgood"] == "hangup"
    assert closed["MZgone"] == "error" and closed["huge"] == "error"
    reply = mulaw(voices["reply"])
    assert np.array_equal(aligned(good.heard_samples, reply), reply)


def test_a_silent_stream_times_out() -> None:
    async def scenario() -> RecordingHandler:
        handler = RecordingHandler()
        gateway, url = await started(handler, idle_timeout_s=0.5)
        twilio = EmulatedTwilio(url)
        await twilio.connect()
        await asyncio.wait_for(twilio.closed.wait(), 3.0)
        await settle(gateway)
        await twilio.close()
        await gateway.stop()
        return handler

    (call,) = run(scenario()).calls
    assert call.closed == "timeout"


def test_stopping_the_gateway_ends_calls_in_progress(voices) -> None:
    async def scenario() -> tuple[RecordingHandler, EmulatedTwilio, int]:
        handler = RecordingHandler(reply=voices["reply"])
        gateway, url = await started(handler)
        twilio = EmulatedTwilio(url)
        await twilio.connect()
        streaming = asyncio.create_task(twilio.stream(voices["caller"]))
        await asyncio.wait_for(handler.started.wait(), 2.0)
        during = gateway.active_calls
        await gateway.stop()
        await asyncio.wait_for(twilio.closed.wait(), 2.0)
        await streaming
        await twilio.close()
        return handler, twilio, during

    handler, twilio, during = run(scenario())
    assert during == 1 and handler.calls[0].closed == "hangup" and twilio.closed.is_set()
