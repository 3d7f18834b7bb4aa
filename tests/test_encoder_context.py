"""A live partial pass encodes its audio plus a margin, never under 15 s, and hears as well."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asr.audio import load_audio
from asr.encoder_context import FULL_FRAMES, content_frames, context_frames
from asr.evaluation import normalize, word_errors
from asr.transcriber import create_transcriber
from tests.conftest import SHARED_DATA
from voicedesk.config import AsrConfig
from voicedesk.errors import ConfigError
from voicedesk.models.prepare import ModelStore

DEV = SHARED_DATA / "asr" / "dev"


def test_the_window_is_the_audio_plus_two_seconds_within_its_bounds() -> None:
    assert context_frames(300, 15) == 1500  # 3 s of audio: the 15-s floor
    assert context_frames(1450, 15) == 1700  # 14.5 s + 2 s, rounded up to whole seconds
    assert context_frames(2900, 15) == FULL_FRAMES  # never past Whisper's window
    assert context_frames(300, 30) == FULL_FRAMES  # 30: always the full window
    assert context_frames(0, 10) == 1000


def test_padding_is_found_after_the_audio_silence_included() -> None:
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.feature_extractor import FeatureExtractor

    audio = np.zeros(16_000 * 4, dtype=np.float32)  # digital silence is not padding
    audio[16_000:32_000] = 0.1 * np.sin(np.arange(16_000) * 0.05)
    features = FeatureExtractor()(audio)
    frames = features.shape[-1] - 1
    assert content_frames(pad_or_trim(features[:, :frames])) == frames
    assert content_frames(np.zeros((80, FULL_FRAMES), dtype=np.float32)) == 0


@pytest.fixture(scope="module")
def store(models_dir: Path) -> ModelStore:
    return ModelStore(models_dir)


def test_a_short_pass_encodes_a_short_window(store: ModelStore) -> None:
    from faster_whisper.audio import pad_or_trim

    transcriber = create_transcriber(AsrConfig(), store)
    model = transcriber._model  # type: ignore[attr-defined]
    features = pad_or_trim(model.feature_extractor(np.full(48_000, 1e-3, np.float32))[:, :300])
    assert model.encode(features, 15.0).shape[1] == 750  # 15 s of encoder frames, not 1,500
    assert model.encode(features).shape[1] == 1500  # Whisper's own passes: the full window
    seen = []
    original = model.encode
    model.encode = lambda features, window_s=30.0: seen.append(window_s) or original(
        features, window_s)
    speech = np.full(48_000, 1e-3, np.float32)
    transcriber.quick_pass(speech)  # a live partial: asr.context_s
    transcriber.transcribe(speech, fallback=False)  # a pass for an answer: the full window
    assert seen == [15.0, 30.0]


def test_live_passes_hear_the_dev_set_as_well_with_the_short_window(store: ModelStore) -> None:
    rows = []
    for listing in sorted(DEV.glob("*/transcripts.tsv")):
        for line in listing.read_text().splitlines():
            if line.strip():
                name, reference = line.split("\t", 1)
                rows.append((load_audio(listing.parent / name).samples, reference))
    errors = {}
    for context in (15.0, 30.0):
        # two threads: live passes encode on both and decode on a single-threaded handle
        transcriber = create_transcriber(AsrConfig(context_s=context, threads=2), store)
        heard = [transcriber.quick_pass(audio).text for audio, _ in rows]
        counts = [word_errors(normalize(ref), normalize(text))
                  for (_, ref), text in zip(rows, heard, strict=True)]
        words = sum(c.reference_words for c in counts)
        errors[context] = sum(c.errors for c in counts) / words
    assert errors[15.0] <= errors[30.0] + 0.01, errors  # measured: 11 of 211 words each


def test_a_window_too_short_to_trust_is_refused(store: ModelStore) -> None:
    with pytest.raises(ConfigError, match="5-30 s"):
        create_transcriber(AsrConfig(context_s=2), store)
