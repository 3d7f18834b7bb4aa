"""`voicedesk call` end to end on an example call, and on bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from tests.conftest import EXAMPLES, SHARED_DATA, run_cli, wer


def rows(home: Path, table: str) -> list[tuple]:
    db = home / "voicedesk.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute(f"select * from {table}").fetchall()  # noqa: S608


@pytest.fixture(scope="module")
def finished_call(tmp_path_factory: pytest.TempPathFactory, models_dir: Path):
    home = tmp_path_factory.mktemp("call-home")
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    out = home / "out"
    result = run_cli(["call", str(EXAMPLES / "outage_report.flac"), "--out", str(out)], home)
    return home, out, result


def test_call_succeeds_and_prints_a_turn_table(finished_call) -> None:
    _, out, result = finished_call
    assert result.returncode == 0, result.stderr
    assert "caller said" in result.stdout and "v2v" in result.stdout
    assert str(out) in result.stdout


def test_call_writes_conversation_and_transcripts(finished_call) -> None:
    _, out, _ = finished_call
    assert sorted(p.name for p in out.iterdir()) == [
        "conversation.wav", "transcript.json", "transcript.txt"]
    info = sf.info(out / "conversation.wav")
    assert info.channels == 2 and info.samplerate == 16_000
    record = json.loads((out / "transcript.json").read_text())
    assert record["channels"] == {"left": "caller", "right": "assistant"}
    starts = [t["caller"]["start"] for t in record["turns"]]
    assert starts == sorted(starts)
    for turn in record["turns"]:
        assert turn["assistant"]["start"] > turn["caller"]["end"]
        assert turn["intent"] and turn["assistant"]["text"]
        assert set(turn["latency_ms"]) >= {"endpoint_ms", "asr_ms", "nlu_ms",
                                           "first_sentence_ms", "tts_first_audio_ms",
                                           "voice_to_voice_ms"}
    assert "Caller:" in (out / "transcript.txt").read_text()


def test_caller_turns_are_transcribed_accurately(finished_call) -> None:
    _, out, _ = finished_call
    record = json.loads((out / "transcript.json").read_text())
    reference = (EXAMPLES / "outage_report.txt").read_text().strip().splitlines()
    hypothesis = [t["caller"]["text"] for t in record["turns"]]
    assert len(hypothesis) == len(reference)
    assert wer(" ".join(reference), " ".join(hypothesis)) < 0.15


def test_reply_audio_is_real_speech_of_the_reply_text(finished_call, assistant) -> None:
    _, out, _ = finished_call
    record = json.loads((out / "transcript.json").read_text())
    stereo, rate = sf.read(out / "conversation.wav", dtype="float32")
    errors = []
    for turn in record["turns"]:
        a, b = (int(turn["assistant"][k] * rate) for k in ("start", "end"))
        heard = assistant.transcriber.transcribe(stereo[a:b, 1]).text
        errors.append(wer(turn["assistant"]["text"], heard))
    assert np.median(errors) < 0.25, errors


def test_call_and_every_turn_are_in_the_store_with_audio(finished_call) -> None:
    home, out, _ = finished_call
    record = json.loads((out / "transcript.json").read_text())
    calls = rows(home, "calls")
    assert [c[0] for c in calls] == [record["call_id"]]
    with sqlite3.connect(home / "voicedesk.db") as conn:
        turns = conn.execute(
            "select transcript, intent, reply, caller_audio_sha256, reply_audio_sha256, "
            "latency_ms from turns order by \"index\"").fetchall()
    assert [t[0] for t in turns] == [t["caller"]["text"] for t in record["turns"]]
    for transcript, intent, reply, caller_sha, reply_sha, latency in turns:
        assert transcript and intent and reply
        assert "voice_to_voice_ms" in json.loads(latency)
        for sha in (caller_sha, reply_sha):
            flac = home / "audio" / sha[:2] / f"{sha}.flac"
            assert sf.info(flac).frames > 1000


def test_unusual_rate_and_channels_are_resampled(tmp_path: Path, home: Path) -> None:
    audio = load_audio(SHARED_DATA / "asr" / "dev" / "pocketsphinx" / "goforward.wav", 11_025)
    stereo = np.stack([audio.samples, audio.samples], axis=1)
    sf.write(tmp_path / "odd.wav", stereo, 11_025)
    result = run_cli(["call", str(tmp_path / "odd.wav"), "--out", str(tmp_path / "out")], home)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out" / "transcript.json").read_text())
    assert "forward" in record["turns"][0]["caller"]["text"].lower()


def _bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    (folder / "notes.wav").write_text("meeting notes, not audio\n" * 50)
    good = (EXAMPLES / "outage_report.flac").read_bytes()
    (folder / "corrupt.wav").write_bytes(b"RIFF" + good[4:400])
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "silent.wav", np.zeros(16_000 * 4, dtype=np.float32), 16_000)
    sf.write(folder / "three.wav", np.zeros((16_000, 3), dtype=np.float32), 16_000)
    return {
        "missing": folder / "missing.wav",
        "not audio": folder / "notes.wav",
        "corrupt": folder / "corrupt.wav",
        "empty": folder / "empty.wav",
        "silent": folder / "silent.wav",
        "three channels": folder / "three.wav",
    }


@pytest.mark.parametrize("case", ["missing", "not audio", "corrupt", "empty", "silent",
                                  "three channels"])
def test_bad_input_gives_one_line_error_and_leaves_nothing(tmp_path: Path, home: Path,
                                                           case: str) -> None:
    path = _bad_inputs(tmp_path / "inputs")[case]
    out = tmp_path / "out"
    result = run_cli(["call", str(path), "--out", str(out)], home)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("voicedesk: error:"), result.stderr
    assert str(path) in lines[0]
    assert not out.exists()
    assert rows(home, "calls") == []
    assert not (home / "audio").exists()


def test_existing_output_folder_is_never_overwritten(tmp_path: Path, home: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli(["call", str(EXAMPLES / "outage_report.flac"), "--out", str(out)], home)
    assert result.returncode == 1 and "already exists" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
