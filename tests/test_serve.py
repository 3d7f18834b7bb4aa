"""`voicedesk serve`: every enabled gateway in one process, one call handler, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asr.audio import to_int16
from tests.conftest import run_cli
from tests.telephony_peers import (
    EmulatedAsterisk,
    EmulatedTwilio,
    RecordingHandler,
    heard_pcm,
    run,
    speech,
)
from voice.serve import enabled_endpoints, parse_address, serve
from voicedesk.config import Config, TelephonyConfig
from voicedesk.errors import VoicedeskError

CALLER_TEXT = "hello, I would like to report an outage at my address"


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return speech(CALLER_TEXT, tmp_path_factory.mktemp("speech"))


def test_addresses_are_host_and_port() -> None:
    assert parse_address("127.0.0.1:9092", "--audiosocket") == ("127.0.0.1", 9092)
    assert parse_address("[::1]:8765", "--websocket") == ("::1", 8765)
    assert parse_address(":5060", "--sip") == ("0.0.0.0", 5060)
    with pytest.raises(VoicedeskError, match=r"--websocket = 'localhost' is not HOST:PORT"):
        parse_address("localhost", "--websocket")
    with pytest.raises(VoicedeskError, match="is not HOST:PORT"):
        parse_address("host:99999", "[telephony] sip")


def test_flags_override_the_telephony_config_and_enable_gateways() -> None:
    telephony = TelephonyConfig(audiosocket="0.0.0.0:9092", websocket="0.0.0.0:8765")
    args = type("Args", (), {"sip": "127.0.0.1:5080", "audiosocket": "127.0.0.1:0",
                             "websocket": None})()
    assert enabled_endpoints(telephony, args) == {"sip": ("127.0.0.1", 5080),
                                                  "audiosocket": ("127.0.0.1", 0),
                                                  "websocket": ("0.0.0.0", 8765)}
    assert enabled_endpoints(TelephonyConfig()) == {}
    with pytest.raises(VoicedeskError, match=r"\[telephony\] audiosocket = 'nine'"):
        enabled_endpoints(TelephonyConfig(audiosocket="nine"))


def test_serve_without_any_gateway_says_how_to_enable_one(home: Path) -> None:
    result = run_cli(["serve"], home, timeout=60)
    assert result.returncode == 1
    assert "nothing to serve: pass --sip, --audiosocket or --websocket" in result.stderr


def test_one_handler_hosts_calls_from_every_gateway_at_once(caller: np.ndarray) -> None:
    handler = RecordingHandler(reply=caller[:8000])

    async def scenario() -> tuple[list[str], EmulatedAsterisk, EmulatedTwilio, list[int]]:
        stop = asyncio.Event()
        ready: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        endpoints = {"sip": ("127.0.0.1", 0), "audiosocket": ("127.0.0.1", 0),
                     "websocket": ("127.0.0.1", 0)}
        server = asyncio.create_task(serve(Config(), endpoints, handler, stop, ready.set_result))
        gateways = await asyncio.wait_for(ready, 5.0)
        by_name = {g.name: g for g in gateways}
        asterisk = EmulatedAsterisk(*by_name["audiosocket"].address)
        host, port = by_name["websocket"].address
        twilio = EmulatedTwilio(f"ws://{host}:{port}/", parameters={"From": "+15550002222"})
        await asterisk.connect()
        await twilio.connect()
        await asyncio.gather(asterisk.stream(caller, after_s=1.2), twilio.stream(caller[:8000]))
        active = [g.active_calls for g in gateways]
        stop.set()
        await asyncio.wait_for(server, 10.0)
        await asyncio.wait_for(asterisk.hung_up.wait(), 2.0)
        await asyncio.wait_for(twilio.closed.wait(), 2.0)
        await asterisk.close()
        await twilio.close()
        return [g.name for g in gateways], asterisk, twilio, active

    names, asterisk, twilio, active = run(scenario())
    assert names == ["sip", "audiosocket", "websocket"]
    assert active == [0, 1, 1]
    channels = sorted(c.info.channel for c in handler.calls)
    assert channels == ["audiosocket", "websocket"]
    assert all(c.closed == "hangup" for c in handler.calls)
    on_asterisk = next(c for c in handler.calls if c.info.channel == "audiosocket")
    sent = to_int16(caller)
    assert np.array_equal(heard_pcm(on_asterisk.samples[:len(sent)]), sent)
    assert np.count_nonzero(asterisk.pcm) > 0.8 * np.count_nonzero(to_int16(caller[:8000]))
    assert len(twilio.heard_samples) == 8000


def test_a_port_in_use_is_reported_with_the_gateway_and_address() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]

    async def scenario() -> None:
        await serve(Config(), {"audiosocket": ("127.0.0.1", port)}, RecordingHandler())

    try:
        with pytest.raises(VoicedeskError, match=rf"cannot listen for audiosocket on "
                                                 rf"127.0.0.1:{port}"):
            run(scenario())
    finally:
        taken.close()


# --- the real command, with the real call loop ------------------------------------------------

HAS_CALL_SERVICE = importlib.util.find_spec("voice.service") is not None
LISTENING = re.compile(r"(\w+) listening on ([\d.]+):(\d+)")


def wait_listening(process: subprocess.Popen[bytes], log: Path, names: set[str],
                   timeout: float) -> dict[str, tuple[str, int]]:
    """Read the server's log file until every gateway says where it listens."""
    found: dict[str, tuple[str, int]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not names <= set(found):
        for match in LISTENING.finditer(log.read_text(errors="replace")):
            if match.group(1) in names:
                found[match.group(1)] = (match.group(2), int(match.group(3)))
        time.sleep(0.1)
    return found


async def until_quiet(heard: Callable[[], list[int]], more_than: list[int],
                      timeout: float, quiet_s: float = 0.6) -> None:
    """Wait until each caller has heard more than ``more_than`` samples and then silence."""
    deadline = time.monotonic() + timeout
    last, still_since = heard(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = heard()
        if now != last:
            last, still_since = now, time.monotonic()
        elif (all(n > m for n, m in zip(now, more_than, strict=True))
              and time.monotonic() - still_since >= quiet_s):
            return
    raise AssertionError(f"callers heard {heard()} samples; expected more than {more_than}, "
                         f"then {quiet_s} s of silence, within {timeout} s")


@pytest.mark.skipif(not HAS_CALL_SERVICE, reason="voice/service.py (CallService) is not "
                                                 "written yet; serve needs it to answer calls")
def test_voicedesk_serve_answers_an_emulated_call_on_each_gateway_and_stops_on_sigterm(
        home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEDESK_")}
    env["VOICEDESK_HOME"] = str(home)
    log_path = home / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "voicedesk", "serve", "--audiosocket", "127.0.0.1:0",
             "--websocket", "127.0.0.1:0"], cwd=home, env=env, stdout=subprocess.DEVNULL,
            stderr=log_file)
    try:
        found = wait_listening(process, log_path, {"audiosocket", "websocket"}, timeout=240)
        assert set(found) == {"audiosocket", "websocket"}, log_path.read_text()[-3000:]

        async def calls() -> tuple[EmulatedAsterisk, EmulatedTwilio, list[int]]:
            asterisk = EmulatedAsterisk(*found["audiosocket"])
            host, port = found["websocket"]
            twilio = EmulatedTwilio(f"ws://{host}:{port}/", parameters={"From": "+15551230000"})
            await asterisk.connect()
            await twilio.connect()
            quiet = np.zeros(0, np.float32)
            lines = [asyncio.create_task(asterisk.stream(quiet, after_s=60.0)),
                     asyncio.create_task(twilio.stream(quiet, after_s=60.0))]

            def heard() -> list[int]:
                return [int(np.count_nonzero(asterisk.pcm)), len(twilio.heard_samples)]

            # Both callers listen to the whole greeting (on a busy machine it may come late),
            await until_quiet(heard, more_than=[8000, 8000], timeout=40.0)
            before = heard()
            # then key an account number, and hear an answer to it.
            for digit in "12345678#":
                asterisk.send_raw(bytes([0x03, 0, 1]) + digit.encode())
                await twilio.send({"event": "dtmf", "streamSid": twilio.stream_sid,
                                   "dtmf": {"track": "inbound_track", "digit": digit}})
                await asyncio.sleep(0.1)
            await until_quiet(heard, more_than=[n + 4000 for n in before], timeout=40.0)
            asterisk.hang_up()
            await twilio.stop()
            await asyncio.wait_for(asyncio.gather(*lines), 5.0)  # each side hung up
            await asterisk.close()
            await twilio.close()
            return asterisk, twilio, before

        asterisk, twilio, before = run(calls(), timeout=100)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        stop_s = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    log = log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert stop_s < 15, f"serve took {stop_s:.1f} s to stop after SIGTERM"
    # Each caller heard the greeting, then an answer to the digits they keyed.
    assert np.count_nonzero(asterisk.pcm) > before[0] + 4000, log[-3000:]
    assert len(twilio.heard_samples) > before[1] + 4000, log[-3000:]
    assert re.search(r"call \S+ on audiosocket from an unknown number: started", log)
    assert re.search(r"call MZ0001 on websocket from \+15551230000: started", log)
    assert re.search(r"call \S+ on audiosocket: ended after", log)
    assert re.search(r"call MZ0001 on websocket: ended after", log)
    assert "stopped after 2 call(s)" in log
    # The keyed account number reached the dialogue on both gateways, as a keypad turn.
    with contextlib.closing(sqlite3.connect(home / "voicedesk.db")) as db:
        keyed_turns = db.execute("SELECT calls.channel, turns.transcript FROM turns JOIN calls "
                                 "ON turns.call_id = calls.id WHERE turns.transcript LIKE "
                                 "'[keypad%'").fetchall()
    assert sorted(keyed_turns) == [("audiosocket", "[keypad 8 digits]"),
                                   ("websocket", "[keypad 8 digits]")], log[-3000:]
