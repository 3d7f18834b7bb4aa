"""The training commands end to end: a stopped run resumes, an incomplete candidate is
refused at once, and promotion and rollback show in `voicedesk models list`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli


def test_train_finetune_stops_and_resumes_where_it_stopped(home: Path) -> None:
    args = ["train", "finetune", "--domain", "--max-steps", "2", "--batch-size", "2",
            "--no-variants", "--no-export", "--threads", "2"]
    first = run_cli([*args, "--stop-after", "1"], home)
    assert first.returncode == 130, first.stderr
    assert "stopped at step 1" in first.stderr and "resume" in first.stderr
    second = run_cli(args, home)
    assert second.returncode == 0, second.stderr
    assert "trained 2 steps (resumed at step 1" in second.stdout
    assert (home / "runs" / "finetune" / "checkpoints" / "step-0000002").is_dir()


def test_train_finetune_mixes_in_the_mapped_rows_of_a_public_corpus(home: Path,
                                                                    tmp_path: Path) -> None:
    folder = tmp_path / "corpora" / "nlu" / "clinc150"
    folder.mkdir(parents=True)
    (folder / "data_full.json").write_text(json.dumps({
        "train": [["book a hotel in rome", "book_hotel"], ["pay my gas bill", "pay_bill"]],
        "oos_train": [["how tall is everest", "oos"]]}))
    result = run_cli(["train", "finetune", "--domain", "--corpora", str(tmp_path / "corpora"),
                      "--general", "clinc150", "--max-steps", "1", "--batch-size", "2",
                      "--no-variants", "--no-export", "--threads", "2"], home)
    assert result.returncode == 0, result.stderr
    assert "2 of 3 rows map onto the telecom catalogue: out_of_scope 2" in result.stderr
    missing = run_cli(["train", "finetune", "--corpora", str(tmp_path / "nowhere"),
                       "--general", "clinc150", "--max-steps", "1", "--no-export"], home)
    assert missing.returncode != 0 and "not found under" in missing.stderr


def test_verify_refuses_an_incomplete_candidate_before_loading_models(home: Path,
                                                                      tmp_path: Path) -> None:
    folder = tmp_path / "candidate"
    (folder / "hf").mkdir(parents=True)
    (folder / "voicedesk_model.json").write_text('{"kind": "llm"}')
    (folder / "hf" / "config.json").write_text("{}")
    result = run_cli(["verify", str(folder), "--domain"], home, timeout=60)
    assert result.returncode == 1
    assert "is incomplete: missing or empty hf/model.safetensors" in result.stderr
    assert "ct2-int8/model.bin" in result.stderr


@pytest.fixture(scope="module")
def exported(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.asr_finetune import load_whisper
    from training.export import export_whisper
    from voicedesk.models.prepare import ModelStore

    model, processor = load_whisper(ModelStore(models_dir).whisper_hf("tiny.en"))
    return export_whisper(model, processor, tmp_path_factory.mktemp("cli") / "whisper-a",
                          {}).root


def test_models_promote_and_rollback_from_the_command_line(home: Path, exported: Path,
                                                           tmp_path: Path) -> None:
    refused = run_cli(["models", "promote", str(exported)], home, timeout=60)
    assert refused.returncode == 1 and "has not been verified" in refused.stderr
    second = tmp_path / "whisper-b"
    shutil.copytree(exported, second, copy_function=os.link)
    for folder in (exported, second):
        done = run_cli(["models", "promote", str(folder), "--force"], home, timeout=60)
        assert done.returncode == 0, done.stderr
    listing = run_cli(["models", "list"], home, timeout=60)
    lines = [line.split() for line in listing.stdout.splitlines()
             if {"whisper-a", "whisper-b"} & set(line.split())]
    assert [(row[2], row[3]) for row in lines] == [("retired", "whisper-a"),
                                                   ("promoted", "whisper-b")]
    back = run_cli(["models", "rollback", "asr"], home, timeout=60)
    assert back.returncode == 0 and "now serving version 1 (whisper-a)" in back.stdout
