"""PCI DSS: a card number a caller reads out never reaches the store, in text or in audio."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import resample
from training.store import CallStore

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng (Debian package) speaks the caller's part")

CARD = "4111 1111 1111 1111"  # the Luhn-valid Visa test number
CARD_WORDS = "four one one one, one one one one, one one one one, one one one one"


def spoken(text: str) -> np.ndarray:
    from voice.espeak_tts import EspeakSynthesizer

    voice = EspeakSynthesizer("en-us+f5")
    return resample(np.concatenate(list(voice.synthesize(text))), voice.sample_rate, 16_000)


def long_digit_runs(text: str) -> list[str]:
    digits = re.sub(r"[\s,.-]", "", text)
    return re.findall(r"\d{12,}", digits)


def assert_no_card(store: CallStore, call_id: str, transcriber) -> None:
    call = store.get_call(call_id)
    assert call is not None
    for turn in call.turns:
        for text in (turn.transcript, turn.reply, " ".join(w["word"] for w in turn.words)):
            assert not long_digit_runs(text), text
            assert "4111" not in text.replace(" ", "").replace(",", "")
    card_turns = [t for t in call.turns if t.redactions.get("card_number")]
    assert card_turns, ("the card was not noticed", [t.transcript for t in call.turns])
    for turn in card_turns:  # what the audio of that turn says now
        audio, rate = store.audio.get(turn.caller_audio_sha256)
        heard = transcriber.transcribe(resample(audio.astype(np.float32), rate, 16_000)).text
        assert not long_digit_runs(heard) and "4111" not in heard.replace(" ", ""), heard
    whole, rate = store.audio.get(call.caller_audio_sha256)
    heard = transcriber.transcribe(resample(whole.astype(np.float32), rate, 16_000)).text
    assert "4111" not in heard.replace(" ", "").replace(",", ""), heard


def test_a_recorded_call_is_stored_without_the_card(config, assistant, tmp_path: Path) -> None:
    from voice.file_call import run_file_call

    gap = np.zeros(16_000, dtype=np.float32)
    audio = np.concatenate([gap, spoken(f"I want to pay my bill with my card, the number is "
                                        f"{CARD_WORDS}."), gap, spoken("Thank you, goodbye."),
                            gap])
    path = tmp_path / "caller.wav"
    sf.write(path, audio, 16_000)
    store = CallStore(config.database_url, config.audio_dir)
    result = run_file_call(assistant, store, path, tmp_path / "out")
    assert_no_card(store, result.call_id, assistant.transcriber)
    outputs = json.loads((tmp_path / "out" / "transcript.json").read_text())
    assert "4111" not in json.dumps(outputs).replace(" ", "")


def test_a_live_call_is_stored_without_the_card(config, assistant) -> None:
    from voice.line import CallerScript, CallerTurn, MemoryLine
    from voice.service import CallService

    script = CallerScript([
        CallerTurn(spoken(f"My card number is {CARD_WORDS}.")),
        CallerTurn(spoken("Goodbye.")),
    ])
    store = CallStore(config.database_url, config.audio_dir)

    async def go():
        service = CallService(config, assistant, store)
        await service.start()
        try:
            return await service.handle(MemoryLine(script, 16_000))
        finally:
            await service.stop()

    outcome = asyncio.run(go())
    assert_no_card(store, outcome.call_id, assistant.transcriber)
