"""Real caller turns for the data-processing tests: espeak-ng speaks, Whisper transcribes.

Each utterance is synthesised once per session and transcribed by the
assistant's real ASR, so turns in the test stores have real audio, real
transcripts and real word times. Calls are written straight into a fresh
store as ``TurnRecord`` rows, the way a call writer stores them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from training.store import CallStore, TurnRecord

RATE = 16_000
UTTERANCES = {
    "card": "Hello, I would like to pay my bill. My card is 4 5 3 9 1 4 8 8 0 3 4 3 6 4 6 7.",
    "phone": "My phone number is 0 7 7 0 0, 9 0 0 1 2 3.",
    "account": "my account number is 4 0 0 1 1 2 3 4",
    "balance": "I want to check my balance please",
    "dispute": "There is a charge on my bill that I do not recognise",
    "slow": "My internet is really slow today",
    "roaming": "How much does it cost to use my phone abroad",
    "agent": "Can I speak to a real person please",
}


@dataclass(frozen=True)
class Spoken:
    key: str
    text: str  # what Whisper heard
    samples: np.ndarray  # 16 kHz mono float32
    words: list[dict[str, Any]]
    confidence: float


@pytest.fixture(scope="session")
def spoken(assistant: Any) -> dict[str, Spoken]:
    from asr.audio import resample
    from voice.espeak_tts import EspeakSynthesizer

    voice = EspeakSynthesizer(voice="en-us", rate_wpm=140)
    out = {}
    for key, text in UTTERANCES.items():
        samples = resample(np.concatenate(list(voice.synthesize(text))), voice.sample_rate, RATE)
        # Greedy only: temperature fallback samples at random, and the phone number,
        # which greedy decoding calls unreliable, came back as different words each run.
        heard = assistant.transcriber.transcribe(samples, None, fallback=False).to_dict()
        words = [{"word": w["word"], "start": float(w["start"]), "end": float(w["end"]),
                  "probability": float(w["probability"])} for w in heard["words"]]
        out[key] = Spoken(key, str(heard["text"]), samples.astype(np.float32), words,
                          float(heard["confidence"]))
    return out


@pytest.fixture(scope="session")
def add_call() -> Callable[..., str]:
    """``add_call(store, turns, variant=0, intents=None)``: store a call, return its id."""
    return store_call


def store_call(store: CallStore, turns: list[Spoken], *, variant: int = 0,
             intents: list[str] | None = None, gap_s: float = 0.5,
             started_at: dt.datetime | None = None, call_id: str | None = None,
             summary: dict[str, Any] | None = None) -> str:
    """Store one call of these turns; ``variant`` changes the audio slightly so two calls
    of the same words are not byte-identical recordings."""
    gain = 1.0 - 0.01 * variant
    pieces, records, clock = [], [], 0.0
    for index, turn in enumerate(turns):
        samples = (turn.samples * gain).astype(np.float32)
        start = clock
        end = start + len(samples) / RATE
        pieces += [samples, np.zeros(int(gap_s * RATE), dtype=np.float32)]
        clock = end + gap_s
        records.append(TurnRecord(
            index=index, caller_start_s=start, caller_end_s=end,
            caller_audio_sha256=store.audio.put(samples, RATE), transcript=turn.text,
            asr_confidence=turn.confidence, words=[dict(w) for w in turn.words],
            intent=(intents or [])[index] if intents else "", intent_confidence=0.0,
            reply="Thank you.", reply_audio_sha256=None))
    whole = np.concatenate(pieces)
    call_id = call_id or store.new_call_id()
    store.record_call(call_id, channel="file", source=f"test-{variant}",
                      duration_s=len(whole) / RATE,
                      caller_audio_sha256=store.audio.put(whole, RATE), models={},
                      turns=records, started_at=started_at or dt.datetime.now(dt.UTC),
                      summary=summary)
    return call_id
