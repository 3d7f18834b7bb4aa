"""The real-time call loop, end to end, on real audio at real-time pace.

The caller is espeak-ng (a voice unlike the assistant's Piper voice) on an
in-memory line; every test plays a whole call through VAD, streaming Whisper,
the dialogue, Piper and the play-out queue, and checks what happened on the
line itself, from the recording of both sides.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from asr.audio import load_audio, resample
from training.store import CallStore
from voice.line import CallerScript, CallerTurn, LineRecording, MemoryLine, speech_end
from voice.service import CallOutcome, CallService
from voicedesk.config import Config

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng (Debian package) speaks the caller's part")

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "asr" / "dev"


def say(text: str, rate: int = 16_000) -> np.ndarray:
    from nlu.scenarios import speakable
    from voice.espeak_tts import EspeakSynthesizer

    voice = EspeakSynthesizer("en-us+f5")
    audio = np.concatenate(list(voice.synthesize(speakable(text))))
    return resample(audio, voice.sample_rate, rate)


def active_spans(samples: np.ndarray, rate: int, floor: float = 0.01) -> list[tuple[float, float]]:
    """Stretches of sound (10 ms resolution), merged across gaps under 150 ms."""
    hop = rate // 100
    n = len(samples) // hop
    loud = np.abs(samples[: n * hop]).reshape(n, hop).max(axis=1) > floor
    spans: list[tuple[float, float]] = []
    start = None
    for i, on in enumerate(list(loud) + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            if spans and start / 100 - spans[-1][1] < 0.15:
                spans[-1] = (spans[-1][0], i / 100)
            else:
                spans.append((start / 100, i / 100))
            start = None
    return spans


def run_call(config: Config, assistant, script: CallerScript, rate: int = 16_000,
             caller_id: str = "") -> tuple[CallOutcome, LineRecording, CallStore]:
    store = CallStore(config.database_url, config.audio_dir)

    async def go() -> tuple[CallOutcome, LineRecording]:
        service = CallService(config, assistant, store)
        await service.start()
        line = MemoryLine(script, rate, caller_id=caller_id)
        try:
            outcome = await service.handle(line)
        finally:
            await service.stop()
        return outcome, line.recording()

    outcome, recording = asyncio.run(go())
    return outcome, recording, store


def caller_turns(outcome: CallOutcome):
    return [t for t in outcome.turns if t.transcript or t.dtmf]


def test_a_two_turn_call_is_answered_heard_and_stored(config, assistant) -> None:
    script = CallerScript([
        CallerTurn(say("Hi, my internet has been down since this morning.")),
        CallerTurn(say("Thank you, goodbye.")),
    ])
    outcome, recording, store = run_call(config, assistant, script)
    turns = caller_turns(outcome)
    assert [t.intent for t in turns] == ["report_outage", "goodbye"]
    assert "internet" in turns[0].transcript.lower()
    for turn in turns:
        assert turn.heard == turn.reply and turn.reply  # nothing talked over
        assert set(turn.latency_ms) >= {"endpoint_ms", "asr_final_ms", "llm_first_token_ms",
                                        "first_sentence_ms", "tts_first_audio_ms",
                                        "voice_to_voice_ms"}
    # the reply starts after the caller stopped, in the recording itself
    for timing in recording.turns:
        assert timing.reply_start is not None and timing.reply_start > timing.speech_end
    assert outcome.ended in {"goodbye", "caller hung up"}
    call = store.get_call(outcome.call_id)
    assert call is not None and len(call.turns) == 2
    assert call.turns[0].intent == "report_outage"
    assert call.turns[0].reply_audio_sha256 and call.turns[0].caller_audio_sha256
    assert call.turns[0].latency_ms["voice_to_voice_ms"] > 0
    # and the same figures, exported for Prometheus over HTTP
    import socket
    import urllib.request

    from voice.metrics import start_metrics_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start_metrics_server("127.0.0.1", port)
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    text = page.decode()
    count = next(line for line in text.splitlines()
                 if line.startswith('voicedesk_turn_stage_seconds_count{stage="voice_to_voice"}'))
    assert float(count.split()[-1]) >= 2
    assert "voicedesk_calls_total" in text


def test_talking_over_the_reply_stops_it_within_200_ms_and_history_keeps_what_was_heard(
        config, assistant) -> None:
    script = CallerScript([
        CallerTurn(say("Hi, my internet has been down since this morning.")),
        # the outage flow asks for the address; the caller cuts in a second into it
        CallerTurn(say("Actually, I want to speak to a person please."), barge_in_s=1.0),
    ], hangup_after_reply=True)
    outcome, recording, _ = run_call(config, assistant, script)
    turns = caller_turns(outcome)
    cut = turns[0]
    assert cut.interrupted and cut.heard != cut.reply
    assert len(cut.heard.split()) < len(cut.reply.split())
    # On the line: the assistant goes quiet within 200 ms of the caller's onset.
    onset = recording.turns[1].start + active_spans(script.turns[1].audio, 16_000)[0][0]
    after = recording.assistant[int(onset * 16_000):]
    still = active_spans(after, 16_000)
    first_stop = still[0][1] if still and still[0][0] < 0.05 else 0.0
    assert first_stop <= 0.2, f"the reply played on for {first_stop:.2f} s"
    assert outcome.barge_ins >= 1
    assert turns[1].intent == "speak_to_agent"


def test_a_backchannel_does_not_cut_the_reply(config, assistant) -> None:
    script = CallerScript([
        CallerTurn(say("What plans do you have?")),
        CallerTurn(say("Okay."), barge_in_s=1.2),
        CallerTurn(say("Goodbye.")),
    ])
    outcome, _, _ = run_call(config, assistant, script)
    first = caller_turns(outcome)[0]
    assert not first.interrupted
    assert first.heard.split() == first.reply.split()
    assert "okay" not in [t.transcript.lower().strip(".") for t in caller_turns(outcome)]


def test_the_assistants_own_echo_never_interrupts_it(config, assistant) -> None:
    script = CallerScript([
        CallerTurn(say("What plans do you have?")),
        CallerTurn(say("Goodbye.")),
    ], echo_delay_s=0.12, echo_gain=0.3)  # about -10 dB, 120 ms: a poor handset
    outcome, _, _ = run_call(config, assistant, script)
    assert outcome.barge_ins == 0
    first = caller_turns(outcome)[0]
    assert first.heard == first.reply
    assert all(not t.interrupted for t in outcome.turns)


def test_background_babble_neither_interrupts_nor_becomes_a_turn(config, assistant) -> None:
    talkers = [load_audio(p).samples for p in sorted(SHARED.glob("librispeech_kw/*.flac"))[:3]]
    n = min(len(t) for t in talkers)
    babble = sum(t[:n] for t in talkers) / 3
    script = CallerScript([
        CallerTurn(say("What plans do you have?")),
        CallerTurn(say("Goodbye.")),
    ], noise=babble.astype(np.float32), noise_level=0.08)  # about 30 dB below the caller
    outcome, recording, _ = run_call(config, assistant, script)
    turns = caller_turns(outcome)
    # The babble runs from the first frame: the greeting, played before the caller says
    # anything, is heard whole, and every turn is the caller's own speech, none the babble's:
    # each starts where the caller started and ends where they stopped. (The words are
    # Whisper's business: under babble it may hear espeak's "goodbye" as "good night".)
    greeting = outcome.turns[0]
    assert greeting.intent == "greeting" and greeting.heard == greeting.reply
    assert "plan" in turns[0].transcript.lower()
    assert len(turns) == len(recording.turns) == 2, [t.transcript for t in turns]
    for turn, spoken in zip(turns, recording.turns, strict=True):
        assert abs(turn.start - spoken.start) < 0.5, (turn.start, spoken.start)
        assert turn.speech_end < spoken.speech_end + 0.5, (turn.speech_end, spoken.speech_end)


def test_a_voice_far_below_the_callers_own_never_becomes_a_turn(config, assistant) -> None:
    # Someone across the room, 26 dB below a caller close to the handset, talks straight
    # after the caller's question, and again between the caller's turns with no reply owed.
    distant = say("Can you turn the television down please") * 0.1
    question = say("What plans do you have?") * 1.8
    gap = np.zeros(int(0.3 * 16_000), dtype=np.float32)
    script = CallerScript([
        CallerTurn(np.concatenate([question, gap, distant]),
                   speech_end_s=speech_end(question, 16_000)),
        CallerTurn(distant),
        CallerTurn(say("Goodbye.") * 1.8),
    ], reply_timeout_s=4.0)
    outcome, _, _ = run_call(config, assistant, script)
    turns = caller_turns(outcome)
    said = [t.transcript.lower() for t in turns]
    assert "plan" in said[0]
    assert not any(re.search(r"television|turn|down", s) for s in said), said
    # The distant voice neither holds the caller's turn open nor talks over the reply.
    assert turns[0].endpoint - turns[0].speech_end < 1.5
    assert turns[0].heard == turns[0].reply and not turns[0].interrupted


def test_a_long_pause_mid_sentence_is_one_turn(config, assistant) -> None:
    head, tail = say("My account number is"), say("four zero zero one one two three four.")
    pause = np.zeros(int(0.9 * 16_000), dtype=np.float32)
    script = CallerScript([CallerTurn(np.concatenate([head, pause, tail])),
                           CallerTurn(say("Goodbye."))])
    outcome, _, _ = run_call(config, assistant, script)
    first = caller_turns(outcome)[0]
    assert "account" in first.transcript.lower()
    assert first.slots.get("account_number") == "40011234"


def test_an_account_number_read_in_groups_is_one_turn(config, assistant) -> None:
    # Asked for the account number, the caller reads it in two groups with a pause
    # between them that is longer than a finished sentence's endpoint.
    pause = np.zeros(int(0.5 * 16_000), dtype=np.float32)
    script = CallerScript([
        CallerTurn(say("How much do I owe?")),
        CallerTurn(np.concatenate([say("four zero zero one."), pause,
                                   say("one two three four.")])),
        CallerTurn(say("Goodbye.")),
    ])
    outcome, _, _ = run_call(config, assistant, script)
    turns = caller_turns(outcome)
    assert "account" in turns[0].reply.lower()
    assert turns[1].slots.get("account_number") == "40011234", [t.transcript for t in turns]


def test_a_silent_caller_is_prompted_then_the_call_ends_politely(config, assistant) -> None:
    config.call.no_input_s = 2.0
    script = CallerScript([], hangup_after_reply=False, reply_timeout_s=40,
                          max_duration_s=40)
    outcome, _, store = run_call(config, assistant, script)
    prompts = [t for t in outcome.turns if t.intent == "no_input"]
    assert len(prompts) == 2
    assert outcome.ended == "no input"
    assert "goodbye" in prompts[-1].heard.lower()
    assert store.get_call(outcome.call_id) is not None


def test_a_caller_who_hangs_up_mid_reply_is_logged_with_what_they_heard(
        config, assistant) -> None:
    script = CallerScript([CallerTurn(say("What plans do you have?"))],
                          hangup_mid_reply_s=1.0)
    outcome, _, store = run_call(config, assistant, script)
    first = caller_turns(outcome)[0]
    assert first.heard and len(first.heard.split()) < len(first.reply.split())
    call = store.get_call(outcome.call_id)
    assert call is not None and call.turns[0].reply == first.heard
    assert call.turns[0].transcript


def test_keypad_digits_verify_the_caller_on_a_telephone_line(config, assistant) -> None:
    rate = 8_000
    script = CallerScript([
        CallerTurn(say("What is my balance?", rate)),
        CallerTurn(dtmf="40011234#"),
        CallerTurn(dtmf="4821#"),
        CallerTurn(say("Goodbye.", rate)),
    ])
    outcome, recording, _ = run_call(config, assistant, script, rate=rate)
    assert recording.rate == 8_000
    keyed = [t for t in outcome.turns if t.dtmf]
    assert [t.dtmf for t in keyed] == ["40011234", "4821"]
    assert keyed[-1].verified



def test_the_service_warms_every_model_up_once_before_the_first_call(
        config, assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first caller must not pay for the models' first run: starting the service runs
    a streaming ASR pass, the intent recogniser, the LLM and the knowledge base once, on
    speech the assistant's own voice made; a second start runs nothing again."""
    from dataclasses import replace

    fresh = replace(assistant)  # the same models, not yet warmed up
    used: list[str] = []

    def spy(name: str, target: object, method: str) -> None:
        real = getattr(target, method)
        monkeypatch.setattr(target, method, lambda *a, **k: used.append(name) or real(*a, **k))

    spy("intent", fresh.recognizer, "understand")
    spy("llm", fresh.llm, "score")
    spy("knowledge", fresh.knowledge, "answer")
    heard: list[str] = []
    transcribe = fresh.transcriber.transcribe
    monkeypatch.setattr(fresh.transcriber, "transcribe",
                        lambda s, *a, **k: heard.append(transcribe(s, *a, **k).text) or None)

    async def start_twice() -> None:
        for _ in range(2):
            service = CallService(config, fresh)
            await service.start()
            await service.stop()

    asyncio.run(start_twice())
    assert sorted(set(used)) == ["intent", "knowledge", "llm"] and len(used) == 3, used
    assert len(heard) == 1 and "balance" in heard[0].lower(), heard  # real speech, once
