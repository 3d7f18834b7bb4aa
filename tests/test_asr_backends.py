"""The three Whisper backends are one model.

The bundled tiny.en weights ship as a CTranslate2 folder. Converted once into
openai-whisper and transformers layouts, they must give the same transcripts
in all three engines on the dev recordings, and the converters must lose
nothing. faster-whisper runs in float32 here: int8 would change the weights,
and this file is about the conversions, not about quantisation (the ASR
benchmark measures that).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asr.audio import load_audio
from asr.ct2_checkpoint import read_model_bin
from asr.transcriber import Transcriber, create_transcriber
from asr.transcript import Transcript
from tests.conftest import SHARED_DATA
from voicedesk.config import AsrConfig
from voicedesk.errors import ConfigError, ModelError
from voicedesk.models.prepare import ModelStore

whisper = pytest.importorskip("whisper", reason="openai-whisper is the optional extra "
                                                "[openai-whisper]")
jiwer = pytest.importorskip("jiwer", reason="jiwer is in the [dev] extra")

DEV = SHARED_DATA / "asr" / "dev"
BACKENDS = ("faster-whisper", "openai-whisper", "transformers")
MODEL = "tiny.en"


def normalise(text: str) -> str:
    """Whisper's English normaliser; phone menus say star and pound, which it would drop."""
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text.replace("*", " star ").replace("#", " pound "))


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    return float(jiwer.wer([normalise(r) for r in references],
                           [normalise(h) for h in hypotheses]))


def dev_recordings() -> list[tuple[Path, str]]:
    """Every recording listed in a transcripts.tsv under the dev folder, with its reference."""
    rows = []
    for listing in sorted(DEV.glob("*/transcripts.tsv")):
        for line in listing.read_text().splitlines():
            if line.strip():
                name, reference = line.split("\t", 1)
                rows.append((listing.parent / name, reference))
    return rows


@pytest.fixture(scope="module")
def store(models_dir: Path) -> ModelStore:
    return ModelStore(models_dir)


@pytest.fixture(scope="module")
def transcribers(store: ModelStore) -> dict[str, Transcriber]:
    config = {name: AsrConfig(backend=name, model=MODEL, compute_type="float32")
              for name in BACKENDS}
    return {name: create_transcriber(config[name], store) for name in BACKENDS}


@pytest.fixture(scope="module")
def dev_set() -> list[tuple[Path, np.ndarray, str]]:
    return [(path, load_audio(path).samples, reference) for path, reference in dev_recordings()]


@pytest.fixture(scope="module")
def transcripts(transcribers: dict[str, Transcriber],
                dev_set: list[tuple[Path, np.ndarray, str]]) -> dict[str, list[Transcript]]:
    return {name: [backend.transcribe(samples) for _, samples, _ in dev_set]
            for name, backend in transcribers.items()}


# ---- the same transcripts --------------------------------------------------------------

def test_the_dev_set_has_all_17_listed_recordings() -> None:
    recordings = dev_recordings()
    assert len(recordings) == 17
    assert all(path.is_file() for path, _ in recordings)


@pytest.mark.parametrize(("first", "second"), [("faster-whisper", "openai-whisper"),
                                               ("faster-whisper", "transformers"),
                                               ("openai-whisper", "transformers")])
def test_backends_transcribe_the_dev_set_within_one_percent_wer_of_each_other(
        transcripts: dict[str, list[Transcript]], first: str, second: str) -> None:
    difference = corpus_wer([t.text for t in transcripts[first]],
                            [t.text for t in transcripts[second]])
    assert difference < 0.01, f"{first} and {second} differ by {difference:.1%} WER"


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_is_as_accurate_as_tiny_en_should_be(
        transcripts: dict[str, list[Transcript]],
        dev_set: list[tuple[Path, np.ndarray, str]], backend: str) -> None:
    error = corpus_wer([reference for *_, reference in dev_set],
                       [t.text for t in transcripts[backend]])
    assert error < 0.10, f"{backend}: {error:.1%} WER on the dev set"  # tiny.en: about 5 %


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_returns_words_in_order_with_times_and_probabilities(
        transcripts: dict[str, list[Transcript]], backend: str) -> None:
    for transcript in transcripts[backend]:
        words = transcript.words
        assert words, "every dev recording has speech"
        assert "".join(w.text for w in words).split() == transcript.text.split()
        assert all(0.0 <= w.start <= w.end <= transcript.duration + 0.5 for w in words)
        assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
        assert all(0.0 < w.probability <= 1.0 for w in words)
        assert 0.3 < transcript.confidence <= 1.0


def test_backends_place_words_at_about_the_same_times(
        transcripts: dict[str, list[Transcript]]) -> None:
    """All three align words with the same cross-attention heads, so times agree closely."""
    reference = transcripts["faster-whisper"][0].words
    for backend in ("openai-whisper", "transformers"):
        words = transcripts[backend][0].words
        assert [w.text for w in words] == [w.text for w in reference]
        gaps = [abs(a.start - b.start) for a, b in zip(words, reference, strict=True)]
        assert float(np.median(gaps)) < 0.1, f"{backend} word starts differ by {gaps}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_silence_gives_empty_text_in_every_backend(transcribers: dict[str, Transcriber],
                                                   backend: str) -> None:
    transcript = transcribers[backend].transcribe(np.zeros(5 * 16_000, dtype=np.float32))
    assert transcript.text == ""
    assert transcribers[backend].transcribe(np.zeros(0, dtype=np.float32)).text == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_prompt_is_accepted_by_every_backend(transcribers: dict[str, Transcriber],
                                               dev_set: list[tuple[Path, np.ndarray, str]],
                                               backend: str) -> None:
    path, samples, reference = next(row for row in dev_set if row[0].name == "jfk.flac")
    transcript = transcribers[backend].transcribe(samples, prompt="President Kennedy's speech.")
    assert corpus_wer([reference], [transcript.text]) < 0.1


def test_faster_whisper_lists_other_readings_the_likeliest_first(
        transcribers: dict[str, Transcriber],
        dev_set: list[tuple[Path, np.ndarray, str]]) -> None:
    from asr.transcriber import AlternativesTranscriber

    backend = transcribers["faster-whisper"]
    assert isinstance(backend, AlternativesTranscriber)
    _, samples, reference = next(row for row in dev_set if row[0].name == "jfk.flac")
    readings = backend.alternatives(samples, "President Kennedy's speech.", count=4)
    assert 2 <= len(readings) <= 4 and len(set(readings)) == len(readings)
    assert corpus_wer([reference], readings[:1]) < 0.1  # the beam's best is the right one
    assert backend.alternatives(np.zeros(0, dtype=np.float32)) == []
    assert not isinstance(transcribers["openai-whisper"], AlternativesTranscriber)


def test_faster_whisper_finds_the_reading_that_fits_with_word_times_on_one_encoder_pass(
        store: ModelStore, dev_set: list[tuple[Path, np.ndarray, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a streaming pass whose reading does not fit, the beam is searched over the
    same encoder output; the reading that fits comes back with its words timed."""
    from asr.faster_whisper_backend import FasterWhisperTranscriber
    from asr.transcriber import SearchingTranscriber

    backend = FasterWhisperTranscriber(store.whisper_ct2(MODEL), AsrConfig(threads=2))
    assert isinstance(backend, SearchingTranscriber)
    _, samples, _ = next(row for row in dev_set if row[0].name == "jfk.flac")
    prompt = "President Kennedy's speech."
    readings = backend.alternatives(samples, prompt, count=4)
    greedy = backend.transcribe(samples, prompt, fallback=False)
    encodes = []
    encode = backend._model.encode
    monkeypatch.setattr(backend._model, "encode", lambda *a: encodes.append(1) or encode(*a))
    wanted = next(r for r in readings[1:] if r != greedy.text)  # greedy's does not fit
    found = backend.reading_that_fits(samples, prompt, lambda text: text == wanted, count=4)
    assert encodes == []  # the encoder output those passes had, not a new one
    assert found is not None and found.text == wanted
    words = found.words
    assert "".join(w.text for w in words).split() == wanted.split()
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert words[0].start >= 0.0 and words[-1].end <= len(samples) / 16_000 + 0.01
    # the words fall where greedy's do (both aligned on the same audio)
    assert abs(words[-1].end - greedy.words[-1].end) < 1.0
    assert -5.0 < found.segments[0].avg_logprob < 0.0  # the beam's own score
    assert backend.reading_that_fits(samples, prompt, lambda text: False, count=4) is None
    assert backend.reading_that_fits(np.zeros(0, np.float32), prompt, bool) is None


# ---- the converters --------------------------------------------------------------------

def test_ct2_to_transformers_and_back_restores_every_tensor_bit_for_bit(
        store: ModelStore, tmp_path: Path) -> None:
    from asr.convert import hf_to_ct2

    original_folder = Path(store.whisper_ct2(MODEL))
    back = hf_to_ct2(store.whisper_hf(MODEL), tmp_path / "ct2", quantization="float16")
    original = read_model_bin(original_folder / "model.bin")
    again = read_model_bin(back / "model.bin")
    assert again.spec == original.spec and again.aliases == original.aliases
    for name, tensor in original.tensors.items():
        assert again.tensors[name].dtype == tensor.dtype, name
        assert np.array_equal(again.tensors[name], tensor), name
    # Newer CTranslate2 releases add flags with their default values, nothing else.
    assert all(again.tensors[name].size == 1 for name in set(again.tensors) - set(original.tensors))
    config = json.loads((back / "config.json").read_text())
    expected = json.loads((original_folder / "config.json").read_text())
    for key in ("alignment_heads", "suppress_ids", "suppress_ids_begin"):
        assert config[key] == expected[key], key
    assert (back / "tokenizer.json").is_file(), "faster-whisper must find the tokenizer offline"


def test_the_openai_checkpoint_loads_with_whisper_load_model(store: ModelStore) -> None:
    checkpoint = store.whisper_openai(MODEL)
    model = whisper.load_model(str(checkpoint), device="cpu")
    assert checkpoint.suffix == ".pt"
    assert not model.is_multilingual and model.dims.n_vocab == 51864
    assert (model.dims.n_mels, model.dims.n_audio_layer, model.dims.n_text_state) == (80, 4, 384)
    embeddings = read_model_bin(Path(store.whisper_ct2(MODEL)) / "model.bin").raw(
        "decoder/embeddings/weight")
    assert np.array_equal(model.decoder.token_embedding.weight.detach().numpy(),
                          embeddings.astype(np.float32))


def test_an_int8_ct2_folder_is_dequantised_into_a_working_openai_checkpoint(
        store: ModelStore, dev_set: list[tuple[Path, np.ndarray, str]], tmp_path: Path) -> None:
    """int8 folders (what ct2-transformers-converter --quantization int8 writes) convert too."""
    from asr.convert import ct2_to_openai, hf_to_ct2
    from asr.openai_whisper_backend import OpenAIWhisperTranscriber

    int8 = hf_to_ct2(store.whisper_hf(MODEL), tmp_path / "int8", quantization="int8")
    assert read_model_bin(int8 / "model.bin").raw("encoder/conv1/weight").dtype == np.int8
    checkpoint = ct2_to_openai(int8, tmp_path / "int8.pt")
    backend = OpenAIWhisperTranscriber(checkpoint, AsrConfig(backend="openai-whisper"))
    _, samples, reference = next(row for row in dev_set if row[0].name == "jfk.flac")
    assert corpus_wer([reference], [backend.transcribe(samples).text]) < 0.1


def test_conversions_are_prepared_once_into_the_cache(store: ModelStore, models_dir: Path) -> None:
    checkpoint, hf_folder = store.whisper_openai(MODEL), Path(store.whisper_hf(MODEL))
    assert checkpoint.is_relative_to(models_dir) and hf_folder.is_relative_to(models_dir)
    assert (checkpoint.parent / ".complete").is_file() and (hf_folder / ".complete").is_file()
    stamp = checkpoint.stat().st_mtime_ns
    assert store.whisper_openai(MODEL) == checkpoint
    assert checkpoint.stat().st_mtime_ns == stamp


def test_local_checkpoints_and_hub_ids_pass_through(store: ModelStore) -> None:
    checkpoint, hf_folder = store.whisper_openai(MODEL), store.whisper_hf(MODEL)
    assert store.whisper_openai(str(checkpoint)) == checkpoint
    assert store.whisper_hf(hf_folder) == hf_folder
    assert store.whisper_hf("openai/whisper-tiny.en") == "openai/whisper-tiny.en"


def test_a_local_ct2_folder_is_converted_into_the_cache_under_its_own_name(
        store: ModelStore, tmp_path: Path) -> None:
    folder = store.whisper_ct2(MODEL)  # any CTranslate2 Whisper folder the user names
    elsewhere = ModelStore(tmp_path / "models")
    checkpoint = elsewhere.whisper_openai(folder)
    assert checkpoint.is_relative_to(tmp_path / "models") and checkpoint.suffix == ".pt"
    assert Path(folder).name in checkpoint.parent.parent.name


def test_openai_whisper_cannot_use_a_hub_id(store: ModelStore) -> None:
    with pytest.raises(ModelError, match="local weights only"):
        store.whisper_openai("Systran/faster-whisper-tiny.en")


def test_a_missing_checkpoint_is_named(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing.pt does not exist"):
        store.whisper_openai(str(tmp_path / "missing.pt"))


def test_an_unknown_backend_is_a_configuration_error(store: ModelStore) -> None:
    with pytest.raises(ConfigError, match="openai-whisper, transformers"):
        create_transcriber(AsrConfig(backend="whisper.cpp"), store)


def test_a_truncated_model_bin_is_reported_not_crashed_on(store: ModelStore,
                                                          tmp_path: Path) -> None:
    original = Path(store.whisper_ct2(MODEL)) / "model.bin"
    broken = tmp_path / "model.bin"
    broken.write_bytes(original.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="truncated"):
        read_model_bin(broken)


def test_a_streaming_pass_decoded_single_threaded_hears_what_faster_whisper_hears(
        store: ModelStore, dev_set: list[tuple[Path, np.ndarray, str]]) -> None:
    """A model with two threads encodes with both and decodes a no-fallback pass on a
    single-threaded handle; the words and their times are faster-whisper's own."""
    from asr.faster_whisper_backend import FasterWhisperTranscriber

    # Whisper's full window, as faster-whisper's own pass has: this is about the decoding
    # (the shorter window of live passes: tests/test_encoder_context.py)
    split = FasterWhisperTranscriber(store.whisper_ct2(MODEL), AsrConfig(threads=2, context_s=30))
    # two replicas of two threads each: no single-threaded handle, faster-whisper's pass
    plain = FasterWhisperTranscriber(store.whisper_ct2(MODEL), AsrConfig(threads=2), replicas=2)
    assert split.splits_decoding and not plain.splits_decoding
    for _, samples, _ in dev_set[:6]:
        ours, theirs = (t.transcribe(samples, fallback=False) for t in (split, plain))
        assert ours.text == theirs.text
        assert [(w.text, round(w.start, 2), round(w.end, 2)) for w in ours.words] == \
            [(w.text, round(w.start, 2), round(w.end, 2)) for w in theirs.words]


def test_an_improbable_short_pass_is_decoded_once_as_faster_whisper_would(
        store: ModelStore, dev_set: list[tuple[Path, np.ndarray, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first 0.6 s of a turn often reads as improbable ("This is..." at -1.05).
    With one temperature faster-whisper's own pass decodes the same tokens again after
    a second encoder pass, so the split pass keeps its reading: same words, one pass."""
    from asr.faster_whisper_backend import LOGPROB_LIMIT, FasterWhisperTranscriber

    split = FasterWhisperTranscriber(store.whisper_ct2(MODEL), AsrConfig(threads=2, context_s=30))
    plain = FasterWhisperTranscriber(store.whisper_ct2(MODEL), AsrConfig(threads=2), replicas=2)
    seek_loop = []
    original = split._model.transcribe
    monkeypatch.setattr(split._model, "transcribe",
                        lambda *a, **k: seek_loop.append(1) or original(*a, **k))
    improbable = 0
    for _, samples, _ in dev_set:
        prefix = samples[:9_600]
        ours, theirs = (t.transcribe(prefix, fallback=False) for t in (split, plain))
        assert [(w.text, round(w.start, 2), round(w.end, 2)) for w in ours.words] == \
            [(w.text, round(w.start, 2), round(w.end, 2)) for w in theirs.words]
        improbable += any(s.avg_logprob < LOGPROB_LIMIT for s in theirs.segments)
    assert improbable >= 3  # the case this test is about did occur
    assert seek_loop == []
