"""Whisper fine-tuning on real clips: a couple of steps, export, and the served formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.asr_finetune import AsrFinetuneOptions, finetune_whisper
from training.export import open_exported
from training.gates import judge, load_gates
from training.loop import LoopOptions
from training.task_examples import AudioExample
from voicedesk.config import AsrConfig, load_config
from voicedesk.models.prepare import ModelStore

DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "asr" / "dev"


def clips(folder: str) -> list[AudioExample]:
    rows = (DEV / folder / "transcripts.tsv").read_text().splitlines()
    out = []
    for row in rows:
        name, _, text = row.partition("\t")
        if (DEV / folder / name).is_file():
            out.append(AudioExample(DEV / folder / name, text.strip(), name))
    return out


@pytest.fixture(scope="session")
def whisper_run(models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    base = ModelStore(models_dir).whisper_hf("tiny.en")
    train = clips("librispeech_kw")[:2]
    options = AsrFinetuneOptions(loop=LoopOptions(max_steps=2, batch_size=2, learning_rate=1e-5,
                                                  progress=False))
    return finetune_whisper(base, train, tmp_path_factory.mktemp("asr") / "run", options)


def test_whisper_fine_tuning_steps_and_exports_both_formats(whisper_run) -> None:
    assert whisper_run.loop.steps == 2 and all(x > 0 for x in whisper_run.loop.losses)
    exported = open_exported(whisper_run.model.root)
    assert exported.kind == "asr"
    assert (exported.serving_path("ct2") / "model.bin").is_file()
    assert (exported.serving_path("transformers") / "model.safetensors").is_file()


def test_by_default_the_encoder_learns_and_the_decoder_keeps_its_weights(
        whisper_run, models_dir: Path) -> None:
    from safetensors.numpy import load_file

    base = load_file(str(Path(ModelStore(models_dir).whisper_hf("tiny.en"))
                         / "model.safetensors"))
    tuned = load_file(str(open_exported(whisper_run.model.root).serving_path("transformers")
                          / "model.safetensors"))
    moved = {name for name, weights in base.items() if not (tuned[name] == weights).all()}
    assert any(name.startswith("model.encoder.") for name in moved)
    assert not any(name.startswith("model.decoder.") for name in moved), sorted(moved)[:5]


@pytest.mark.parametrize(("train", "learning"), [("decoder", {"decoder"}),
                                                 ("all", {"encoder", "decoder"})])
def test_the_part_asked_for_is_the_part_that_learns(train: str, learning: set[str]) -> None:
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from training.asr_finetune import freeze

    model = WhisperForConditionalGeneration(WhisperConfig(
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=100,
        max_source_positions=8, max_target_positions=32, pad_token_id=1, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1))
    freeze(model, train)
    parts = {"encoder": model.get_encoder(), "decoder": model.get_decoder()}
    assert {name for name, part in parts.items()
            if any(p.requires_grad for p in part.parameters())} == learning
    learns = {name: sum(p.numel() for p in part.parameters() if p.requires_grad)
              for name, part in parts.items()}
    assert all(learns[name] > 0.9 * sum(p.numel() for p in parts[name].parameters())
               for name in learning), learns  # the part, not a layer of it


def test_an_unknown_part_to_train_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    from voicedesk.errors import ModelError

    with pytest.raises(ModelError, match="cannot train 'vocoder'"):
        finetune_whisper("/nonexistent", [], tmp_path, AsrFinetuneOptions(train="vocoder"))


@pytest.mark.parametrize("backend", ["faster-whisper", "transformers"])
def test_the_exported_whisper_transcribes_held_out_speech(whisper_run, models_dir: Path,
                                                          backend: str) -> None:
    from asr.audio import load_audio
    from asr.evaluation import normalize, word_errors
    from asr.transcriber import create_transcriber

    exported = open_exported(whisper_run.model.root)
    folder = exported.serving_path("transformers" if backend == "transformers" else "ct2")
    transcriber = create_transcriber(AsrConfig(backend=backend, model=str(folder)),
                                     ModelStore(models_dir))
    held_out = clips("librispeech_kw")[2]
    text = transcriber.transcribe(load_audio(held_out.audio).samples).text
    assert word_errors(normalize(held_out.text), normalize(text)).wer < 30


def test_asr_verification_scores_wer_for_candidate_and_baseline(whisper_run, home: Path,
                                                                tmp_path: Path) -> None:
    from training.verify import VerifyOptions, verify

    config = load_config(environ={"VOICEDESK_HOME": str(home)})
    options = VerifyOptions(clips=clips("librispeech_kw")[2:], general_clips=clips("lhotse"))
    verdict = verify(whisper_run.model.root, config, options)
    cand, base = verdict.metrics["candidate"], verdict.metrics["baseline"]
    assert {"wer", "wer_general", "rtf"} <= set(cand) and {"wer", "wer_general"} <= set(base)
    assert 0 <= cand["wer"] < 40 and 0 <= base["wer"] < 40
    others = "[wer_general]\ntolerance = 100\n[rtf]\ntolerance = 100\n"
    lenient = tmp_path / "lenient.toml"
    lenient.write_text("[wer]\ntolerance = 100\n" + others)
    assert judge(load_gates(lenient), cand, base)[0]
    strict = tmp_path / "strict.toml"
    strict.write_text(f"[wer]\ntolerance = 100\nmaximum = {cand['wer'] - 0.01}\n" + others)
    passed, gates = judge(load_gates(strict), cand, base)
    assert not passed and [g["metric"] for g in gates if g["status"] == "fail"] == ["wer"]
