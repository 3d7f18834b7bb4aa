"""`voicedesk data build-dataset`: reviewed call turns plus general data, split by call."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select
from sqlalchemy.orm import Session

from nlu.domain import load_domain
from nlu.numbers import spoken_digits_to_text
from tests.conftest import SHARED_DATA, run_cli
from training.data.fusion import MARKER, BuildOptions, build_dataset, split_of
from training.store import CallStore
from training.store.schema import Dataset

pytest_plugins = ["data_calls"]

SPLITS = ("train", "validation", "test")
INTENT = {"phone": "update_contact_details", "balance": "check_balance",
          "dispute": "billing_dispute", "slow": "slow_internet", "roaming": "roaming",
          "agent": "speak_to_agent", "account": "check_balance"}
PAIRS = [("phone", "balance"), ("dispute", "slow"), ("roaming", "agent"), ("account", "slow")]


@pytest.fixture
def store(config) -> Iterator[CallStore]:
    store = CallStore(config.database_url, config.audio_dir)
    yield store
    store.close()


def _ids_per_split(seed: int = 13, per_split: int = 3) -> list[str]:
    """Call ids chosen so that every split gets calls under the default split."""
    chosen: dict[str, list[str]] = {s: [] for s in SPLITS}
    n = 0
    while any(len(v) < per_split for v in chosen.values()):
        call_id = f"call-{n:04d}"
        split = split_of(call_id, seed, (0.8, 0.1, 0.1))
        if len(chosen[split]) < per_split:
            chosen[split].append(call_id)
        n += 1
    return [c for s in SPLITS for c in chosen[s]]


def _fill(store: CallStore, add_call, spoken) -> list[str]:
    ids = _ids_per_split()
    for i, call_id in enumerate(ids):
        first, second = PAIRS[i % len(PAIRS)]
        add_call(store, [spoken[first], spoken[second]], variant=i, call_id=call_id)
    return ids


def _review_everything(home: Path, tmp_path: Path) -> None:
    """A reviewer works through the exported queue and sets every intent."""
    queue = tmp_path / "queue.jsonl"
    assert run_cli(["data", "review-export", "--out", str(queue)], home).returncode == 0
    rows = [json.loads(line) for line in queue.read_text().splitlines()]
    for row in rows:
        text = spoken_digits_to_text(row["text"]).lower()
        row["intent"] = next(intent for key, intent in (
            ("phone number", "update_contact_details"), ("account", "check_balance"),
            ("balance", "check_balance"), ("charge", "billing_dispute"),
            ("slow", "slow_internet"), ("abroad", "roaming"), ("person", "speak_to_agent"))
            if key in text)
    queue.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli(["data", "review-import", str(queue), "--reviewer", "ana"], home)
    assert result.returncode == 0, result.stderr


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_no_reviewed_turns_is_a_clear_error(add_call, store, spoken, home: Path,
                                            tmp_path: Path) -> None:
    empty = run_cli(["data", "build-dataset", "--out", str(tmp_path / "a")], home)
    assert empty.returncode == 1
    assert "no reviewed turns" in empty.stderr and "review-import" in empty.stderr
    add_call(store, [spoken["balance"]], intents=["check_balance"])
    unreviewed = run_cli(["data", "build-dataset", "--out", str(tmp_path / "b")], home)
    assert unreviewed.returncode == 1
    assert "1 turn(s), none with a reviewed intent" in unreviewed.stderr
    assert "Traceback" not in unreviewed.stderr
    assert not (tmp_path / "b").exists()


def test_build_dataset_writes_the_contracted_folder(add_call, store, spoken, home: Path,
                                                    tmp_path: Path) -> None:
    call_ids = _fill(store, add_call, spoken)
    _review_everything(home, tmp_path)
    out = tmp_path / "ds1"
    result = run_cli(["data", "build-dataset", "--out", str(out), "--corpora", str(SHARED_DATA),
                      "--general-limit", "40"], home)
    assert result.returncode == 0, result.stderr
    assert "dataset voicedesk version 1" in result.stdout
    # Long steps show progress with a count and an ETA.
    assert re.search(r"dataset audio: 18/18 turns\s+100% ETA", result.stderr)

    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["name"], manifest["version"], manifest["seed"]) == ("voicedesk", 1, 13)
    for name, info in manifest["files"].items():
        assert _sha256(out / name) == info["sha256"], name
    assert not (out / MARKER).exists()

    examples = {s: _read(out / f"{s}.jsonl") for s in SPLITS}
    keys = {"id", "call_id", "source", "text", "intent", "slots", "reply"}
    assert all(set(e) == keys for s in SPLITS for e in examples[s])
    calls = {s: {e["call_id"] for e in examples[s] if e["source"] == "calls"} for s in SPLITS}
    assert all(calls[s] for s in SPLITS)
    assert not (calls["train"] & calls["validation"] or calls["train"] & calls["test"]
                or calls["validation"] & calls["test"])
    assert set().union(*calls.values()) == set(call_ids)
    assert manifest["splits"][s := "train"]["examples"] == len(examples[s])
    # Telecom intents for calls; general corpora keep their labels, marked by source.
    telecom = set(load_domain("telecom").intents)
    assert {e["intent"] for s in SPLITS for e in examples[s] if e["source"] == "calls"} <= telecom
    general = [e for s in SPLITS for e in examples[s] if e["source"] != "calls"]
    assert {e["source"] for e in general} == {"banking77", "clinc150"}
    assert all(e["call_id"] is None for e in general)
    assert manifest["statistics"]["intents"]["train"]
    assert set(manifest["label_spaces"]) == {"calls", "banking77", "clinc150"}
    # Everything is redacted, and the report says how much without saying what.
    said = [e["text"] for s in SPLITS for e in examples[s] if e["source"] == "calls"]
    said += [r["text"] for s in SPLITS for r in _read(out / "asr" / f"{s}.jsonl")]
    assert re.sub(r"\D", "", spoken_digits_to_text(" ".join(said))) == ""  # no number left
    assert sum("[PHONE_NUMBER]" in text for text in said) == 3
    assert manifest["redaction"]["counts"] == {"account_number": 2, "phone_number": 3}
    # corpus.jsonl: knowledge base sections and train calls only.
    corpus = _read(out / "corpus.jsonl")
    assert any(c["source"].startswith("knowledge:") for c in corpus)
    assert {c["source"] for c in corpus} >= {"calls", "banking77", "clinc150"}
    # ASR part: audio inside the folder, silenced where personal data was said.
    asr = {s: _read(out / "asr" / f"{s}.jsonl") for s in SPLITS}
    assert all({r["call_id"] for r in asr[s]} <= calls[s] for s in SPLITS)
    phone = next(r for s in SPLITS for r in asr[s]
                 if r["text"].lower().startswith("my phone number"))
    assert "[" not in phone["text"] and re.sub(r"\D", "", spoken_digits_to_text(
        phone["text"])) == ""
    samples, rate = sf.read(str(out / phone["audio"]), dtype="float32")
    assert phone["audio"].startswith("asr/audio/") and phone["audio"].endswith(".flac")
    tail = samples[int(2.5 * rate):int(5.5 * rate)]  # the digits were said here
    assert float(np.abs(tail).max()) == 0.0 and float(np.abs(samples[:rate]).max()) > 0.05

    # A second build is the next version, in the datasets table too.
    again = run_cli(["data", "build-dataset", "--out", str(tmp_path / "ds2"), "--quiet"], home)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "ds2" / "manifest.json").read_text())["version"] == 2
    with Session(store.engine) as session:
        rows = session.scalars(select(Dataset).order_by(Dataset.version)).all()
    assert [(r.name, r.version) for r in rows] == [("voicedesk", 1), ("voicedesk", 2)]
    # A dataset folder is never overwritten.
    clash = run_cli(["data", "build-dataset", "--out", str(out)], home)
    assert clash.returncode == 1 and "already holds dataset 'voicedesk' version 1" in clash.stderr


def test_an_interrupted_build_resumes_and_reuses_its_audio(add_call, store, spoken,
                                                           home: Path, tmp_path: Path) -> None:
    _fill(store, add_call, spoken)
    _review_everything(home, tmp_path)
    domain = load_domain("telecom")
    out = tmp_path / "ds"

    def stop(n: int) -> None:
        if n == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(store, out, BuildOptions(), list(domain.intents), domain.knowledge_dir,
                      show_progress=False, on_audio=stop)
    assert (out / MARKER).exists() and not (out / "manifest.json").exists()
    assert len(list((out / "asr" / "audio").glob("*.flac"))) == 5
    result = build_dataset(store, out, BuildOptions(), list(domain.intents),
                           domain.knowledge_dir, show_progress=False)
    assert result.audio_reused == 5 and result.version == 1
    assert sum(result.manifest["splits"][s]["asr"] for s in SPLITS) == 18
