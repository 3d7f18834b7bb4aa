"""`voicedesk transcribe`: folders of recorded calls in, JSONL/SRT/VTT/TXT out, resumable."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from asr import batch
from asr.audio import load_audio, resample
from asr.batch import LEDGER, PauseChunker, plan_groups, plan_workers, transcribe_recordings
from asr.evaluation import WordErrors, normalize, word_errors
from asr.formats import CallTranscript
from asr.long_form import PIECE_S, LongFormDecoder, cut_at_pauses
from asr.packing import PackedDecoder, Piece, Placement, pack, split_window
from asr.telephony import CallRecording
from asr.transcriber import Transcriber, create_transcriber
from asr.transcript import Segment, Transcript, Word
from tests.conftest import EXAMPLES, SHARED_DATA, run_cli, wer
from voice.vad import create_vad
from voicedesk.config import AsrConfig, VadConfig
from voicedesk.models.prepare import ModelStore

DEV = SHARED_DATA / "asr" / "dev"
LIBRI = DEV / "librispeech_kw"
AUSTEN = DEV / "pocketsphinx" / "sense_and_sensibility_01_austen_64kb-0930.wav"
CALLER_FIRST = "he might even have been made amiable himself"
AGENT = "for a full hour he had paced up and down waiting but he could wait no longer"
CALLER_SECOND = "he was not an ill disposed young man"
GOOD = {"good1", "goforward", "wide_192k", "silence", "noise", "call"}
BAD = {"corrupt", "truncated", "notes", "empty", "low_rate"}


def records(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / LEDGER).read_text().splitlines()
    return {Path(r["path"]).stem: r for r in map(json.loads, lines)}


def errors(out: Path) -> dict[str, str]:
    lines = (out / "errors.jsonl").read_text().splitlines()
    return {Path(e["path"]).stem: e["error"] for e in map(json.loads, lines)}


def make_call(path: Path) -> None:
    """A two-party call at 8 kHz mu-law: caller, then agent, then caller again."""
    first = load_audio(AUSTEN, rate=8000).samples
    agent = load_audio(LIBRI / "1089-134691-0001.flac", rate=8000).samples
    second = load_audio(DEV / "pocketsphinx" / "sense_and_sensibility_01_austen_64kb-0880.wav",
                        rate=8000).samples
    call = np.zeros((8000 * 16, 2), dtype=np.float32)
    call[4000:4000 + len(first), 0] = first
    call[8000 * 5:8000 * 5 + len(agent), 1] = agent
    call[8000 * 23 // 2:8000 * 23 // 2 + len(second), 0] = second
    sf.write(path, call, 8000, subtype="ULAW")


@pytest.fixture(scope="module")
def batch_home(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("batch-home")
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    return home


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good recordings next to every kind of bad input a recorder share collects."""
    folder = tmp_path_factory.mktemp("recordings")
    shutil.copy(LIBRI / "1089-134691-0000.flac", folder / "good1.flac")
    (folder / "sub").mkdir()
    shutil.copy(DEV / "pocketsphinx" / "goforward.wav", folder / "sub" / "goforward.wav")
    austen = load_audio(AUSTEN).samples
    sf.write(folder / "wide_192k.wav", resample(austen, 16_000, 192_000), 192_000)
    sf.write(folder / "silence.wav", np.zeros(16_000 * 3, np.float32), 16_000)
    noise = np.random.default_rng(7).normal(0, 0.1, 16_000 * 5).astype(np.float32)
    sf.write(folder / "noise.wav", noise, 16_000)
    make_call(folder / "call.wav")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00")
    flac = (LIBRI / "1089-134686-0000.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    (folder / "notes.txt").write_text("call notes: customer rang about billing\n")
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "low_rate.wav", np.zeros(4000, np.float32), 4000)
    return folder


@pytest.fixture(scope="module")
def runs(mixed: Path, batch_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The folder transcribed once, then the same command again."""
    out = tmp_path_factory.mktemp("batch-out") / "out"
    started = time.perf_counter()
    first = run_cli(["transcribe", str(mixed), "--out", str(out)], batch_home)
    first_s = time.perf_counter() - started
    ledger = (out / LEDGER).read_bytes()
    started = time.perf_counter()
    second = run_cli(["transcribe", str(mixed), "--out", str(out)], batch_home)
    return {"out": out, "first": first, "first_s": first_s, "ledger": ledger, "second": second,
            "second_s": time.perf_counter() - started}


def test_every_readable_file_gets_one_record_with_the_contract_keys(runs: dict) -> None:
    found = records(runs["out"])
    assert set(found) == GOOD, runs["first"].stderr
    for record in found.values():
        assert {"path", "segments", "speakers", "language", "duration", "text"} <= record.keys()
        assert Path(record["path"]).is_absolute() and record["language"] == "en"
        for seg in record["segments"]:
            assert {"start", "end", "text", "speaker", "words"} <= seg.keys()
            assert 0 <= seg["start"] <= seg["end"] <= record["duration"] + 0.01
            for word in seg["words"]:
                assert {"start", "end", "word", "probability"} <= word.keys()
    assert wer("he could wait no longer", found["good1"]["text"]) == 0
    assert wer("go forward ten meters", found["goforward"]["text"]) <= 0.25
    assert found["wide_192k"]["sample_rate"] == 192_000
    assert wer("he might even have been made amiable himself", found["wide_192k"]["text"]) < 0.2


def test_unreadable_files_are_listed_with_a_reason_and_the_batch_carries_on(runs: dict) -> None:
    first = runs["first"]
    assert first.returncode == 1
    reasons = errors(runs["out"])
    assert set(reasons) == BAD
    assert "is empty" in reasons["empty"]
    assert "not a readable audio file" in reasons["notes"]
    assert "4000 Hz" in reasons["low_rate"]
    assert "truncated or corrupt" in reasons["truncated"]
    assert all("\n" not in r and len(r) < 300 for r in reasons.values())
    assert re.search(r"6 transcribed, 0 skipped \(already done\), 5 failed", first.stdout)
    assert "transcribing" in first.stderr and "file" in first.stderr  # the progress bar


def test_silence_and_pure_noise_give_empty_text_not_invented_words(runs: dict) -> None:
    found = records(runs["out"])
    for name in ("silence", "noise"):
        assert found[name]["text"] == "" and found[name]["segments"] == []
        assert (runs["out"] / f"{name}.txt").read_text() == ""


def test_a_stereo_call_reads_as_one_conversation_in_time_order(runs: dict) -> None:
    call = records(runs["out"])["call"]
    assert call["speakers"] == ["caller", "agent"] and call["channels"] == 2
    segments = call["segments"]
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    turns: list[tuple[str, str]] = []
    for seg in segments:
        if turns and turns[-1][0] == seg["speaker"]:
            turns[-1] = (seg["speaker"], turns[-1][1] + " " + seg["text"])
        else:
            turns.append((seg["speaker"], seg["text"]))
    assert [speaker for speaker, _ in turns] == ["caller", "agent", "caller"]
    for (_, text), reference in zip(turns, [CALLER_FIRST, AGENT, CALLER_SECOND], strict=True):
        assert wer(reference, text) < 0.35, text
    agent_start = next(s["start"] for s in segments if s["speaker"] == "agent")
    assert 0.2 < segments[0]["start"] < 1.0 and 4.5 < agent_start < 5.5  # as laid out


def test_srt_vtt_and_text_are_well_formed_and_name_the_speakers(runs: dict) -> None:
    out = runs["out"]
    stamp = r"\d{2}:\d{2}:\d{2}[,.]\d{3}"
    srt = (out / "call.srt").read_text()
    blocks = srt.strip().split("\n\n")
    assert len(blocks) == len(records(out)["call"]["segments"])
    for number, block in enumerate(blocks, 1):
        index, timing, text = block.split("\n")
        assert index == str(number)
        assert re.fullmatch(rf"{stamp.replace('[,.]', ',')} --> {stamp.replace('[,.]', ',')}",
                            timing)
        assert re.fullmatch(r"\[(caller|agent)\] \S.*", text)
    vtt = (out / "call.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    cues = vtt.split("\n\n")[1:]
    for cue in filter(str.strip, cues):
        timing, text = cue.strip().split("\n")
        assert re.fullmatch(rf"{stamp.replace('[,.]', '.')} --> {stamp.replace('[,.]', '.')}",
                            timing)
        assert re.fullmatch(r"<v (caller|agent)>\S.*</v>", text)
    txt = (out / "call.txt").read_text().splitlines()
    assert txt[0].startswith("caller: ") and any(line.startswith("agent: ") for line in txt)
    mono = (out / "good1.srt").read_text()
    assert mono.startswith("1\n00:00:0") and "[caller]" not in mono  # one party: no labels


def test_a_rerun_skips_every_finished_file_and_retries_the_failed(runs: dict) -> None:
    second = runs["second"]
    assert second.returncode == 1  # the bad files are tried again, and fail again
    assert re.search(r"0 transcribed, 6 skipped \(already done\), 5 failed", second.stdout)
    assert "skipping 6 file(s) already transcribed" in second.stderr
    assert (runs["out"] / LEDGER).read_bytes() == runs["ledger"]
    assert runs["second_s"] < runs["first_s"]


def test_a_changed_file_is_transcribed_again(batch_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(LIBRI / "1089-134691-0000.flac", folder / "a.flac")
    shutil.copy(LIBRI / "1089-134686-0001.flac", folder / "b.flac")
    out = tmp_path / "out"
    assert run_cli(["transcribe", str(folder), "--out", str(out), "--format", "jsonl"],
                   batch_home).returncode == 0
    stat = (folder / "a.flac").stat()
    os.utime(folder / "a.flac", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = run_cli(["transcribe", str(folder), "--out", str(out), "--format", "jsonl"],
                    batch_home)
    assert again.returncode == 0 and "1 transcribed, 1 skipped" in again.stdout
    assert set(records(out)) == {"a", "b"} and not list(out.glob("*.srt"))


def test_same_named_files_from_two_runs_into_one_folder_keep_their_own_text(
        batch_home: Path, tmp_path: Path) -> None:
    for side, source in (("a", LIBRI / "1089-134691-0000.flac"),
                         ("b", DEV / "pocketsphinx" / "goforward.wav")):
        (tmp_path / side).mkdir()
        shutil.copy(source, tmp_path / side / f"call{source.suffix}")
        assert run_cli(["transcribe", str(tmp_path / side), "--out", str(tmp_path / "out"),
                        "--format", "jsonl,txt"], batch_home).returncode == 0
    kept = {json.loads(line)["outputs"]["txt"]: json.loads(line)["text"]
            for line in (tmp_path / "out" / LEDGER).read_text().splitlines()}
    assert len(kept) == 2, kept  # two names, neither text replaced by the other
    for name, text in kept.items():
        assert (tmp_path / "out" / name).read_text().strip().endswith(text.split()[-1])


def test_a_glob_over_a_folder_holding_the_output_skips_the_output(batch_home: Path,
                                                                 tmp_path: Path) -> None:
    shutil.copy(DEV / "pocketsphinx" / "goforward.wav", tmp_path / "a.wav")
    args = ["transcribe", str(tmp_path / "**"), "--out", str(tmp_path / "out")]
    assert run_cli(args, batch_home).returncode == 0
    again = run_cli(args, batch_home)  # the transcripts are under the glob now
    assert again.returncode == 0 and "0 failed" in again.stdout, again.stdout


def test_missing_paths_and_empty_globs_are_errors_not_crashes(batch_home: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(["transcribe", str(tmp_path / "nowhere" / "*.wav"),
                      str(tmp_path / "gone.wav"), "--out", str(out)], batch_home)
    assert result.returncode == 1
    reasons = list(errors(out).values())
    assert any("matches no files" in r for r in reasons)
    assert any("does not exist" in r for r in reasons)
    bad = run_cli(["transcribe", str(tmp_path), "--format", "srt,pdf"], batch_home)
    assert bad.returncode == 1 and "unknown output format(s) pdf" in bad.stderr


def test_workers_and_threads_never_oversubscribe_the_cores() -> None:
    assert plan_workers(0, files=50, cores=2) == (2, 1)
    assert plan_workers(0, files=50, cores=8) == (8, 1)
    assert plan_workers(2, files=50, cores=2) == (2, 1)
    assert plan_workers(1, files=50, cores=2) == (1, 2)
    assert plan_workers(0, files=1, cores=16) == (1, 16)
    assert plan_workers(4, files=50, cores=8, threads=8) == (4, 2)


def test_files_are_grouped_in_order_one_run_per_worker_at_least_and_bounded() -> None:
    paths = [f"{i:02d}.wav" for i in range(10)]
    length = dict.fromkeys(paths, 30.0)
    length["03.wav"] = 200.0
    groups = plan_groups(paths, 2, length.__getitem__, most_s=100.0)
    assert [p for g in groups for p in g] == paths  # every file once, in order
    assert len(groups) >= 4 and ["03.wav"] in groups  # the long file alone
    assert all(sum(length[p] for p in g) <= 100 for g in groups if "03.wav" not in g)
    assert plan_groups(paths, 2, length.__getitem__, most_s=1e9) == [paths[:4], paths[4:]]
    assert plan_groups(paths[:1], 4, length.__getitem__) == [paths[:1]]
    assert plan_groups(paths, 1, lambda _: 0.0) == [paths]  # unreadable: the worker says why


@pytest.fixture(scope="module")
def same_inputs_locally(runs: dict, mixed: Path, batch_home: Path,
                        tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good1 and the call (and an empty file) on their own, in local mode: the files a
    batch transcribes together share windows, so this is what Ray must match."""
    out = tmp_path_factory.mktemp("local-same-inputs") / "out"
    inputs = [mixed / "good1.flac", mixed / "call.wav", mixed / "empty.wav"]
    run_cli(["transcribe", *map(str, inputs), "--out", str(out)], batch_home)
    return out


def test_worker_processes_give_the_same_transcripts(runs: dict, mixed: Path, batch_home: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [mixed / "good1.flac", mixed / "call.wav"]
    result = run_cli(["transcribe", *map(str, inputs), "--out", str(out), "--workers", "2"],
                     batch_home)
    assert result.returncode == 0, result.stderr
    assert "2 worker(s) x 1 thread(s)" in result.stderr
    local = records(runs["out"])
    # Other neighbours in the shared windows than in the whole folder's run: nearly the
    # same words, and the same speakers.
    for name, record in records(out).items():
        assert wer(local[name]["text"], record["text"]) <= 0.1, (name, record["text"])
        assert {s["speaker"] for s in record["segments"]} == {
            s["speaker"] for s in local[name]["segments"]}


def test_ray_data_on_a_local_ray_gives_the_same_transcripts(same_inputs_locally: Path,
                                                            mixed: Path, batch_home: Path,
                                                            tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    out = tmp_path / "out"
    inputs = [mixed / "good1.flac", mixed / "call.wav", mixed / "empty.wav"]
    result = run_cli(["transcribe", *map(str, inputs), "--out", str(out), "--ray", "local"],
                     batch_home)
    assert result.returncode == 1, result.stderr  # empty.wav, reported the same way
    assert "on Ray (local)" in result.stderr
    local = records(same_inputs_locally)
    ray = records(out)
    assert {k: r["text"] for k, r in ray.items()} == {k: local[k]["text"]
                                                      for k in ("good1", "call")}
    assert [s["speaker"] for s in ray["call"]["segments"]] == [
        s["speaker"] for s in local["call"]["segments"]]
    assert set(errors(out)) == {"empty"}
    assert (out / "call.vtt").read_text() == (same_inputs_locally / "call.vtt").read_text()


def test_intents_are_recognised_for_the_callers_segments(mixed: Path, batch_home: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(["transcribe", str(EXAMPLES / "outage_report.flac"), str(mixed / "call.wav"),
                      "--out", str(out), "--intents", "--format", "jsonl"], batch_home)
    assert result.returncode == 0, result.stderr
    found = records(out)
    outage = found["outage_report"]["segments"]
    assert outage and all(s["intent"] and 0 < s["intent_confidence"] <= 1 for s in outage)
    assert outage[0]["intent"] == "report_outage"
    call = found["call"]["segments"]
    assert all(("intent" in s) == (s["speaker"] == "caller") for s in call)


# ---- long recordings -------------------------------------------------------------------------

def examples_back_to_back() -> tuple[np.ndarray, str]:
    names = ["outage_report", "speak_to_agent"]  # 68 s: three windows
    audio = np.concatenate([load_audio(EXAMPLES / f"{n}.flac").samples for n in names])
    text = " ".join((EXAMPLES / f"{n}.txt").read_text() for n in names)
    return audio, text


def test_a_long_stream_is_cut_into_windows_of_at_most_30_s_at_pauses() -> None:
    audio, _ = examples_back_to_back()
    chunker = PauseChunker(create_vad(VadConfig()))
    chunks = []
    for start in range(0, len(audio), 160_000):  # 10 s blocks, as read from disk
        chunks += chunker.push(audio[start:start + 160_000])
    chunks += chunker.flush()
    assert len(chunks) >= 3
    assert all(len(c.samples) <= 30 * 16_000 for c in chunks)
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), audio)
    assert [c.start for c in chunks] == pytest.approx(
        np.cumsum([0] + [len(c.samples) / 16_000 for c in chunks[:-1]]).tolist())
    speech_rms = np.sqrt(np.mean(np.square(audio)))
    for chunk in chunks[1:]:
        at = int(chunk.start * 16_000)
        around = audio[at - 800:at + 800]  # 50 ms either side of the cut
        assert np.sqrt(np.mean(np.square(around))) < 0.1 * speech_rms


def test_an_hour_class_recording_streams_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(3)
    minutes = 20
    with sf.SoundFile(path, "w", 8000, 2, subtype="ULAW") as out:
        for _ in range(minutes * 6):  # 10 s blocks of tone bursts and pauses
            t = np.arange(80_000) / 8000
            burst = (np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)) * 0.3
            out.write(np.stack([burst, rng.normal(0, 0.01, 80_000)], axis=1).astype(np.float32))
    recording = CallRecording(path)
    chunkers = [PauseChunker(create_vad(VadConfig())) for _ in range(2)]
    seconds = 0.0
    tracemalloc.start()
    for block in recording.speech_blocks():
        for channel, chunker in enumerate(chunkers):
            for chunk in chunker.push(block[:, channel]):
                assert len(chunk.samples) <= 30 * 16_000
                seconds += len(chunk.samples) / 16_000 / 2
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole = minutes * 60 * 16_000 * 4 * 2  # the call decoded at once: 16 kHz float32 stereo
    assert peak < 40e6 < whole / 3, f"peak {peak / 1e6:.0f} MB"
    assert seconds > minutes * 60 - 31


def test_a_long_recording_is_transcribed_chunk_by_chunk_on_one_clock(batch_home: Path,
                                                                    tmp_path: Path) -> None:
    audio, reference = examples_back_to_back()
    sf.write(tmp_path / "long.flac", audio, 16_000)
    out = tmp_path / "out"
    result = run_cli(["transcribe", str(tmp_path / "long.flac"), "--out", str(out)], batch_home)
    assert result.returncode == 0, result.stderr
    record = records(out)["long"]
    assert record["duration"] == pytest.approx(len(audio) / 16_000, abs=0.01)
    assert wer(reference, record["text"]) < 0.15, record["text"]
    starts = [s["start"] for s in record["segments"]]
    assert starts == sorted(starts) and starts[-1] > 45  # times offset past the first window


# ---- several recordings in one window ----------------------------------------------------

def placed(*durations: float, gap: float = 0.5) -> list[Placement]:
    """Pieces of silence of these lengths, laid out in a window as the packer does."""
    out, at = [], 0.0
    for index, duration in enumerate(durations):
        out.append(Placement(Piece(index, 10.0 * index, np.zeros(round(duration * 16_000),
                                                                 np.float32)), at))
        at += duration + gap
    return out


def said(*words: tuple[float, float, str] | tuple[float, float, str, float]) -> Segment:
    made = tuple(Word(w[0], w[1], f" {w[2]}", w[3] if len(w) > 3 else 0.95)  # type: ignore[misc]
                 for w in words)
    return Segment(made[0].start, made[-1].end, "".join(w.text for w in made).strip(), made)


def test_words_go_back_to_the_piece_they_were_spoken_in_on_its_own_clock() -> None:
    pieces = placed(2.0, 2.0)  # 0-2 s, gap, 2.5-4.5 s
    window = Transcript((said((0.1, 0.9, "ten"), (0.9, 1.8, "of"), (2.6, 3.4, "clubs"),
                              (3.4, 4.3, "please")),))
    split, doubtful = split_window(pieces, window, gap_s=0.5)
    assert doubtful == set()
    assert [t.text for t in split] == ["ten of", "clubs please"]
    assert [t for w in split[1].words for t in (w.start, w.end)] == pytest.approx(
        [0.1, 0.9, 0.9, 1.8])
    assert split[1].segments[0].start == pytest.approx(0.1)


def test_a_word_in_the_middle_of_a_gap_puts_the_pieces_around_it_in_doubt() -> None:
    pieces = placed(2.0, 2.0, 2.0)
    window = Transcript((said((0.1, 1.9, "hello"), (2.2, 2.3, "there"), (2.6, 4.4, "hi")),
                         said((5.1, 6.4, "bye"))))
    _, doubtful = split_window(pieces, window, gap_s=0.5)
    assert doubtful == {0, 1}


def test_a_segments_last_word_drawn_into_the_gap_stays_with_its_piece() -> None:
    pieces = placed(2.0, 2.0)
    window = Transcript((said((0.2, 1.8, "five"), (2.25, 2.25, "five")),
                         said((2.6, 4.4, "eight"))))
    split, doubtful = split_window(pieces, window, gap_s=0.5)
    assert doubtful == set() and [t.text for t in split] == ["five five", "eight"]


def test_improbable_sparse_or_wordless_pieces_are_decoded_alone_with_their_neighbours() -> None:
    pieces = placed(2.0, 2.0, 4.0, 2.0)
    window = Transcript((said((0.1, 1.9, "mumble", 0.2)),  # improbable
                         said((2.6, 4.4, "fine")),
                         said((5.0, 5.4, "sparse"), (9.2, 10.8, "spills", 0.9))))  # 0.4 of 4 s
    _, doubtful = split_window(pieces, window, gap_s=0.5)
    # piece 3 shares a Whisper segment with sparse piece 2: if Whisper skipped most of
    # piece 2, the words it stretched over it may be piece 3's
    assert doubtful == {0, 2, 3}
    _, nothing = split_window(placed(2.0, 2.0), Transcript((said((0.1, 1.9, "alone")),)), 0.5)
    assert nothing == {1}  # no words at all: speech Whisper skipped, or noise; alone decides


@pytest.fixture(scope="module")
def transcriber(models_dir: Path) -> Transcriber:
    return create_transcriber(AsrConfig(threads=2), ModelStore(models_dir))


def references() -> dict[str, str]:
    found = {}
    for listing in DEV.glob("*/transcripts.tsv"):
        for line in filter(str.strip, listing.read_text().splitlines()):
            name, text = line.split("\t", 1)
            found[Path(name).stem] = text
    return found


@pytest.fixture(scope="module")
def packed_folder(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Short recordings with a silent and a noise file among them, as a share holds them."""
    folder = tmp_path_factory.mktemp("packed")
    sf.write(folder / "silence.wav", np.zeros(16_000 * 3, np.float32), 16_000)
    noise = np.random.default_rng(7).normal(0, 0.1, 16_000 * 4).astype(np.float32)
    sf.write(folder / "noise.wav", noise, 16_000)
    return [DEV / "whisper_jfk" / "jfk.flac", folder / "noise.wav",
            DEV / "pocketsphinx" / "goforward.wav", folder / "silence.wav",
            LIBRI / "1089-134691-0001.flac", DEV / "pocketsphinx" / "cards_005.wav",
            DEV / "pocketsphinx" / "sense_and_sensibility_01_austen_64kb-0870.wav"]


@pytest.fixture(scope="module")
def packed_and_alone(transcriber: Transcriber, packed_folder: list[Path]
                     ) -> tuple[dict[str, CallTranscript], dict[str, CallTranscript]]:
    def run(pack: bool) -> dict[str, CallTranscript]:
        found = {}
        for path, result, _ in transcribe_recordings(packed_folder, transcriber, VadConfig(),
                                                     pack=pack):
            assert isinstance(result, CallTranscript), result
            found[Path(path).stem] = result
        return found
    return run(True), run(False)


def test_packed_recordings_share_windows(transcriber: Transcriber,
                                         packed_folder: list[Path]) -> None:
    decoder = PackedDecoder(transcriber)
    done = []
    for index, path in enumerate(packed_folder):
        done += decoder.add(Piece(index, 0.0, load_audio(path).samples))
    done += decoder.flush()
    assert sorted(p.owner for p, _ in done) == list(range(len(packed_folder)))
    assert decoder.windows <= 3 < len(packed_folder)  # 36 s of audio: two windows, or three
    assert decoder.alone <= 3  # the noise, the silence, and at most one more in doubt


def test_a_window_is_decoded_again_from_the_pieces_whisper_stopped_before(
        transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whisper often ends a packed window after its first utterance, as if the rest were
    past the window; the later pieces are decoded from the same encoder pass."""
    model = transcriber._model  # type: ignore[attr-defined]
    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda *a, **k: encoded.append(1) or encode(*a, **k))
    first = load_audio(DEV / "lhotse" / "2412-153948-0000.flac").samples
    second = load_audio(DEV / "pocketsphinx" / "sense_and_sensibility_01_austen_64kb-0870.wav"
                        ).samples
    window = pack([Piece(0, 0.0, first), Piece(1, 0.0, second)])
    starts = [p.offset for p in window.placements]
    duration = len(window.samples) / 16_000
    alone, stopped = transcriber.transcribe_window(window.samples)
    assert stopped < starts[1] + 1.0  # the premise: one pass stops at the second piece
    assert "dashwood" not in alone.text.lower()
    heard, complete = transcriber.transcribe_window(window.samples, starts)
    assert encoded == [1, 1]  # one encoder pass each
    assert complete == duration
    later = " ".join(w.text for s in heard.segments for w in s.words
                     if (w.start + w.end) / 2 > starts[1]).lower()
    earlier = " ".join(w.text for s in heard.segments for w in s.words
                       if (w.start + w.end) / 2 < starts[1]).lower()
    assert "dashwood" in later and "dashwood" not in earlier
    assert "narrative" in earlier and "narrative" not in later
    truth = references()
    assert wer(truth["sense_and_sensibility_01_austen_64kb-0870"], later) <= 0.1, later
    starts_heard = [s.start for s in heard.segments]
    assert starts_heard == sorted(starts_heard)


def test_every_word_lands_in_the_recording_that_said_it(packed_and_alone: tuple) -> None:
    packed, alone = packed_and_alone
    own = {"jfk": "americans", "goforward": "forward", "1089-134691-0001": "hour",
           "cards_005": "spades", "sense_and_sensibility_01_austen_64kb-0870": "dashwood"}
    for name, marker in own.items():
        for other, transcript in packed.items():
            assert (marker in transcript.text.lower()) == (other == name), (other, marker)
    truth = references()
    for name in ("jfk", "1089-134691-0001", "sense_and_sensibility_01_austen_64kb-0870"):
        assert wer(truth[name], packed[name].text) <= 0.2, (name, packed[name].text)
    for name in own:  # digits or words ("10" or "ten") may change with the neighbours
        transcript = packed[name]
        assert wer(alone[name].text, transcript.text) <= 0.35, (name, transcript.text)
        for segment in transcript.segments:
            assert 0 <= segment.start <= segment.end <= transcript.duration + 0.01
            assert all(segment.start - 0.01 <= w.start <= w.end <= segment.end + 0.01
                       for w in segment.words)


def test_packed_transcripts_match_decoding_each_file_alone(packed_and_alone: tuple) -> None:
    packed, alone = packed_and_alone
    assert packed.keys() == alone.keys()
    together = " ".join(packed[k].text for k in alone)
    apart = " ".join(alone[k].text for k in alone)
    assert wer(apart, together) <= 0.1, (apart, together)


def test_silence_and_noise_packed_among_speech_stay_empty(packed_and_alone: tuple) -> None:
    packed, _ = packed_and_alone
    for name in ("silence", "noise"):
        assert packed[name].text == "" and packed[name].segments == ()


# ---- one long recording ------------------------------------------------------------------

@pytest.fixture(scope="module")
def joined_dev(tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[list[Path], list[np.ndarray], list[tuple[float, float]], Path]:
    """The dev recordings joined with a second of silence after each (98 s, a call's
    shape): the files, their audio, each one's stretch of the joined clock, the file."""
    listed = sorted(listing.parent / line.split("\t", 1)[0]
                    for listing in DEV.glob("*/transcripts.tsv")
                    for line in filter(str.strip, listing.read_text().splitlines()))
    parts = [load_audio(path).samples for path in listed]
    gap = np.zeros(16_000, np.float32)
    spans, at = [], 0.0
    for samples in parts:
        spans.append((at - 0.5, at + len(samples) / 16_000 + 0.5))  # to the gaps' middles
        at += (len(samples) + len(gap)) / 16_000
    joined = tmp_path_factory.mktemp("joined") / "joined.flac"
    sf.write(joined, np.concatenate([p for s in parts for p in (s, gap)]), 16_000)
    return listed, parts, spans, joined


def test_a_long_recording_is_decoded_as_one_file_no_worse_than_file_by_file(
        transcriber: Transcriber, joined_dev: tuple) -> None:
    """The joined dev recordings take the long-form route (short pieces cut at pauses,
    not packed), with a WER no worse than decoding each file alone; every file's words
    come back on the joined file's clock, inside its stretch."""
    truth = references()
    listed, parts, spans, joined = joined_dev
    at = spans[-1][1] + 0.5
    assert at > batch.LONG_FORM_S
    [(_, result, _)] = list(transcribe_recordings([joined], transcriber, VadConfig()))
    assert isinstance(result, CallTranscript), result
    reference = " ".join(truth[path.stem] for path in listed)
    alone = [transcriber.transcribe(samples).text for samples in parts]
    assert wer(reference, result.text) <= wer(reference, " ".join(alone)), result.text
    words = [w for segment in result.segments for w in segment.words]
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert words[0].start >= 0 and words[-1].end <= result.duration + 0.01
    heard = [" ".join(w.word for w in words if start <= (w.start + w.end) / 2 < end)
             for start, end in spans]
    for path, own, text in zip(listed, alone, heard, strict=True):  # its words, its stretch
        said = truth[path.stem]
        assert wer(said, text) <= wer(said, own) + 0.5, (path.stem, said, own, text)
    assert wer(reference, " ".join(heard)) <= wer(reference, " ".join(alone))


def test_a_long_recording_is_heard_no_worse_than_by_whispers_seek_loop_over_the_whole(
        transcriber: Transcriber, joined_dev: tuple) -> None:
    """Pooled over seven orderings of the joined dev recordings, scored as ``voicedesk
    asr eval`` scores: where Whisper's 30-s windows fall moves one ordering's WER by
    several points either way (3.8-18.6 % for the seek loop), so one ordering cannot
    say which way is better."""
    truth = references()
    listed, parts, _, _ = joined_dev
    decoder = LongFormDecoder(transcriber, VadConfig())
    gap = np.zeros(16_000, np.float32)
    said, pieces, seek_loop = [], [], []
    for order in range(7):
        files = list(zip(listed, parts, strict=True))
        random.Random(order).shuffle(files)
        audio = np.concatenate([part for _, samples in files for part in (samples, gap)])
        said.append(" ".join(truth[path.stem] for path, _ in files))
        pieces.append(decoder.decode(audio).text)
        seek_loop.append(transcriber.transcribe(audio).text)
    def pooled(heard: list[str]) -> float:  # the product's WER: Whisper's normaliser
        return sum((word_errors(normalize(r), normalize(h)) for r, h in zip(said, heard,
                                                                           strict=True)),
                   WordErrors(0, 0, 0, 0)).wer

    assert pooled(pieces) <= pooled(seek_loop), (pooled(pieces), pooled(seek_loop), pieces)


def test_long_silences_are_shortened_for_whisper_and_words_keep_the_files_clock(
        transcriber: Transcriber) -> None:
    first = load_audio(DEV / "whisper_jfk" / "jfk.flac").samples
    second = load_audio(DEV / "pocketsphinx" / "goforward.wav").samples
    resumes = (len(first) + 8 * 16_000) / 16_000  # 8 s of silence: Whisper hears 1 s of it
    audio = np.concatenate([first, np.zeros(8 * 16_000, np.float32), second])
    heard = LongFormDecoder(transcriber, VadConfig()).decode(audio)
    words = [w for segment in heard.segments for w in segment.words]
    late = [w for w in words if "forward" in w.text.lower()]
    assert late and all(resumes - 0.5 <= w.start <= heard.duration for w in late), words
    assert all(w.end <= len(first) / 16_000 + 0.5 for w in words if "americans" in w.text.lower())


def test_pieces_are_cut_at_pauses_and_no_longer_than_asked_where_the_pauses_allow() -> None:
    utterances = [(0.2, 4.0), (5.0, 9.0), (10.0, 12.5), (13.5, 30.0), (31.0, 33.0)]
    bounds = cut_at_pauses(utterances, 34.0, 13.0)
    assert bounds[0] == 0.0 and bounds[-1] == 34.0 and bounds == sorted(bounds)
    assert bounds == [0.0, 13.0, 30.5, 34.0]  # each cut in a pause's middle
    assert cut_at_pauses([(0.0, 5.0)], 6.0, 13.0) == [0.0, 6.0]  # nowhere to cut
    assert cut_at_pauses([], 3.0, 13.0) == [0.0, 3.0]


def test_a_long_block_is_decoded_in_short_pieces_two_at_once_by_a_backend_with_replicas(
        models_dir: Path, joined_dev: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two single-threaded model workers take the pieces of a long block, cut in pauses,
    two at a time, longest first, each through the short encoder window, a worker's
    two pieces decoded as one batch while enough are left; each file's words still come
    back inside its stretch, and no worse than the file decoded alone."""
    listed, parts, spans, joined = joined_dev
    transcriber = create_transcriber(AsrConfig(threads=1), ModelStore(models_dir), replicas=2)
    calls: list[tuple[list[float], float, float, bool]] = []  # (audio s, began, ended, short)
    window = transcriber.transcribe_window  # type: ignore[attr-defined]
    windows = transcriber.transcribe_windows  # type: ignore[attr-defined]

    def timed(pieces: list[np.ndarray], decode: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        heard = decode(*args, **kwargs)
        calls.append(([len(p) / 16_000 for p in pieces], began, time.perf_counter(),
                      kwargs.get("short", False)))
        return heard

    monkeypatch.setattr(transcriber, "transcribe_window",
                        lambda samples, *a, **k: timed([samples], window, samples, *a, **k))
    monkeypatch.setattr(transcriber, "transcribe_windows",
                        lambda pieces, *a, **k: timed(pieces, windows, pieces, *a, **k))
    audio = load_audio(joined).samples
    heard = LongFormDecoder(transcriber, VadConfig()).decode(audio)
    lengths = [s for c in calls for s in c[0]]
    assert len(lengths) >= len(audio) / 16_000 / PIECE_S and all(c[3] for c in calls)
    assert len([s for s in lengths if s <= PIECE_S + 1.0]) >= len(lengths) - 2  # but a rest
    assert any(len(c[0]) == 2 for c in calls), calls  # two pieces in one batch
    overlapping = sum(1 for a, b in zip(calls, calls[1:], strict=False) if b[1] < a[2])
    assert overlapping >= 1, calls  # a lane began before the other's pieces were done
    begun = sorted(calls, key=lambda c: c[1])  # the longest first: no long piece left last
    first = sorted(s for c in begun[:2] for s in c[0])
    assert first == sorted(lengths)[-len(first):], begun
    words = [w for segment in heard.segments for w in segment.words]
    assert [w.start for w in words] == sorted(w.start for w in words)
    truth = references()
    alone = [transcriber.transcribe(samples).text for samples in parts]
    for path, own, (start, end) in zip(listed, alone, spans, strict=True):
        text = " ".join(w.text for w in words if start <= (w.start + w.end) / 2 < end)
        assert wer(truth[path.stem], text) <= wer(truth[path.stem], own) + 0.5, (path, text)
    reference = " ".join(truth[path.stem] for path in listed)
    assert wer(reference, heard.text) <= wer(reference, " ".join(alone)) + 0.02, heard.text


# ---- several windows at once ------------------------------------------------------------

@pytest.fixture(scope="module")
def two_workers(models_dir: Path) -> Transcriber:
    """What a worker with two threads holds: two single-threaded model workers."""
    return create_transcriber(AsrConfig(threads=1), ModelStore(models_dir), replicas=2)


def test_windows_decoded_as_one_batch_read_as_each_does_alone(
        two_workers: Transcriber, joined_dev: tuple) -> None:
    """Batched first passes change nothing but the time: each window's words and how far
    it is complete are what the window gets alone; an empty or over-long one keeps its
    place (the seek loop decodes the long one)."""
    _, parts, _, _ = joined_dev
    pieces = [parts[0], np.zeros(0, np.float32), parts[3], parts[5],
              np.concatenate(parts[:8])]  # over 30 s
    assert len(pieces[-1]) > 30 * 16_000
    together = two_workers.transcribe_windows(pieces, short=True)  # type: ignore[attr-defined]
    alone = [two_workers.transcribe_window(p, short=True)  # type: ignore[attr-defined]
             for p in pieces]
    assert [(h.text, round(c, 2)) for h, c in together] == \
        [(h.text, round(c, 2)) for h, c in alone]
    assert together[0][0].text and together[1][0].text == "" and together[-1][0].text


def test_packed_windows_are_decoded_two_at_once_with_two_model_workers(
        two_workers: Transcriber, joined_dev: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """With two lanes, two windows are decoded at the same time; every piece still comes
    back whole, each file's words the same as one lane gives them."""
    listed, parts, _, _ = joined_dev
    passes: list[tuple[float, float]] = []
    window = two_workers.transcribe_window  # type: ignore[attr-defined]

    def timed(*args: Any, **kwargs: Any) -> tuple[Transcript, float]:
        began = time.perf_counter()
        heard = window(*args, **kwargs)
        passes.append((began, time.perf_counter()))
        return heard

    def run(lanes: int) -> dict[int, str]:
        decoder = PackedDecoder(two_workers, lanes=lanes)
        done = []
        for index, samples in enumerate(parts):
            done += decoder.add(Piece(index, 0.0, samples))
        done += decoder.flush()
        decoder.close()
        texts: dict[int, list[tuple[float, str]]] = {}
        for piece, heard in done:
            texts.setdefault(piece.owner, []).append((piece.start, heard.text))
        return {k: " ".join(t for _, t in sorted(v)) for k, v in texts.items()}

    one = run(1)
    monkeypatch.setattr(two_workers, "transcribe_window", timed)
    two = run(2)
    assert sorted(two) == sorted(one) == list(range(len(parts)))  # every piece is back
    assert len(passes) >= 3
    overlapping = sum(1 for (a, b), (c, d) in zip(passes, passes[1:], strict=False) if c < b)
    assert overlapping >= 1, passes  # a window began before the one before it ended
    truth = references()
    reference = " ".join(truth[path.stem] for path in listed)
    single = " ".join(one[k] for k in sorted(one))
    assert wer(reference, " ".join(two[k] for k in sorted(two))) <= wer(reference, single) + 0.02


@pytest.fixture(scope="module")
def long_stereo_call(tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[Path, list[list[Path]], list[list[tuple[float, float]]]]:
    """A 90-s two-channel call: the dev recordings as turns, caller (left) and agent
    (right) in turn, 0.6 s apart, line noise on both; each side's files and stretches."""
    listed = sorted(listing.parent / line.split("\t", 1)[0]
                    for listing in DEV.glob("*/transcripts.tsv")
                    for line in filter(str.strip, listing.read_text().splitlines()))
    turns = [load_audio(path).samples for path in listed]
    gap = round(0.6 * 16_000)
    call = np.random.default_rng(3).normal(0, 0.002, (sum(len(t) + gap for t in turns), 2))
    sides: list[list[Path]] = [[], []]
    stretches: list[list[tuple[float, float]]] = [[], []]
    at = 0
    for k, (path, samples) in enumerate(zip(listed, turns, strict=True)):
        call[at:at + len(samples), k % 2] += samples
        sides[k % 2].append(path)
        stretches[k % 2].append((at / 16_000 - 0.3, (at + len(samples)) / 16_000 + 0.3))
        at += len(samples) + gap
    path = tmp_path_factory.mktemp("long-call") / "call.flac"
    sf.write(path, call.astype(np.float32), 16_000)
    return path, sides, stretches


def each_side_heard_in_its_turns(result: CallTranscript | Exception, sides: list[list[Path]],
                                 stretches: list[list[tuple[float, float]]]) -> None:
    """Every word on its side, inside one of its turns' stretches; each side's WER bounded."""
    assert isinstance(result, CallTranscript), result
    truth = references()
    for channel, (files, spans) in enumerate(zip(sides, stretches, strict=True)):
        words = [w for s in result.segments if s.channel == channel for w in s.words]
        stray = [w for w in words if not any(a <= (w.start + w.end) / 2 <= b for a, b in spans)]
        assert words and not stray, (channel, stray, spans)
        reference = " ".join(truth[f.stem] for f in files)
        said = " ".join(s.text for s in result.segments if s.channel == channel)
        assert wer(reference, said) <= 0.12, (channel, said)


def test_a_long_two_channel_call_is_heard_side_by_side_each_word_in_its_turn(
        two_workers: Transcriber, long_stereo_call: tuple,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Both channels' pieces go to the model workers together, so neither waits at the
    end of one side while pieces of the other are left."""
    path, sides, stretches = long_stereo_call
    assert sf.info(path).duration > batch.LONG_FORM_S
    together: list[int] = []
    decode_all = LongFormDecoder.decode_all

    def spied(self: LongFormDecoder, blocks: list[np.ndarray]) -> list[Transcript]:
        together.append(len(blocks))
        return decode_all(self, blocks)

    monkeypatch.setattr(LongFormDecoder, "decode_all", spied)
    [(_, result, _)] = list(transcribe_recordings([path], two_workers, VadConfig()))
    assert together == [2], together  # one call: the whole call, both channels at once
    each_side_heard_in_its_turns(result, sides, stretches)


def test_packed_a_long_two_channel_call_is_packed_turn_by_turn_on_each_channel(
        two_workers: Transcriber, long_stereo_call: tuple,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``asr.pack``, a stereo call past ``LONG_FORM_S`` is each side's turns: packed,
    not heard alone channel by channel."""
    path, sides, stretches = long_stereo_call

    def no_seek_loop(*_: Any) -> Transcript:
        raise AssertionError("a two-channel call took the long-form route")

    monkeypatch.setattr(LongFormDecoder, "decode_all", no_seek_loop)
    [(_, result, _)] = list(transcribe_recordings([path], two_workers, VadConfig(), pack=True))
    each_side_heard_in_its_turns(result, sides, stretches)


def test_a_files_text_does_not_depend_on_the_files_beside_it(
        two_workers: Transcriber, packed_folder: list[Path]) -> None:
    """Heard alone (the default), each file's transcript is the same whatever the files
    around it, and whatever their order: a rerun of one file gives the text it had."""
    def texts(paths: list[Path]) -> dict[str, str]:
        found = {}
        for path, result, _ in transcribe_recordings(paths, two_workers, VadConfig()):
            assert isinstance(result, CallTranscript), result
            found[Path(path).stem] = result.text
        return found

    together = texts(packed_folder)
    assert texts(list(reversed(packed_folder))) == together
    assert all(texts([path]) == {path.stem: together[path.stem]} for path in packed_folder[:3])


def test_identical_recordings_packed_together_each_get_their_own_words_every_time(
        two_workers: Transcriber, tmp_path: Path) -> None:
    """Six copies of one prompt packed into a window sound like a repetition loop to
    Whisper; its temperature fallback then sampled the whole pack at random (other
    copies' words in one file, text that changed between runs). Each copy is decoded
    alone instead: its own words, the same in every run."""
    source = load_audio(DEV / "pocketsphinx" / "goforward.wav").samples
    paths = []
    for k in range(6):
        paths.append(tmp_path / f"copy{k}.wav")
        sf.write(paths[-1], source, 16_000)
    alone = two_workers.transcribe(source).text  # "Go forward 10 meters."
    runs = []
    for _ in range(2):
        texts = {}
        for path, result, _ in transcribe_recordings(paths, two_workers, VadConfig(),
                                                     pack=True):
            assert isinstance(result, CallTranscript), result
            texts[Path(path).stem] = result.text
        runs.append(texts)
        assert all(text == alone for text in texts.values()), texts
    assert runs[0] == runs[1]


def test_one_sides_segment_is_cut_where_the_other_side_speaks_inside_it() -> None:
    """One side's speech under 2 s apart is decoded together, and alignment stretches the
    last word before the pause over it; the other side's turn in that pause ("Five,
    five." at 43.2 s) cuts the segment there, so the call reads in time order."""
    from asr.formats import SpeakerSegment, SpokenWord

    words = (SpokenWord(40.4, 41.4, "7", 0.9), SpokenWord(41.4, 41.7, "of", 0.9),
             SpokenWord(41.7, 45.4, "Clovs.", 0.9),  # stretched over the pause
             SpokenWord(45.4, 45.8, "8", 0.9), SpokenWord(45.8, 46.5, "of Spades.", 0.9))
    agent = SpeakerSegment(40.4, 46.5, "7 of Clovs. 8 of Spades.", "agent", 1, words)
    caller = SpeakerSegment(43.2, 44.5, "Five, five.", "caller", 0,
                            (SpokenWord(43.2, 44.5, "Five, five.", 0.9),))
    ordered = sorted(batch._split_at_turns([agent, caller]), key=lambda s: s.start)
    assert [(s.speaker, s.text) for s in ordered] == [
        ("agent", "7 of Clovs."), ("caller", "Five, five."), ("agent", "8 of Spades.")]
    assert ordered[0].end == ordered[0].words[-1].end == 43.2  # ends where the caller began
    assert ordered[2].start == 45.4 and ordered[2].end == 46.5
    alone = SpeakerSegment(50.0, 52.0, "Go forward.", "caller", 0,
                           (SpokenWord(50.0, 52.0, "Go forward.", 0.9),))
    assert batch._split_at_turns([alone]) == [alone]


def test_a_ray_address_where_nothing_listens_fails_at_once_with_the_reason() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(batch.VoicedeskError, match="could not reach the Ray cluster"):
        batch.check_ray_address(f"127.0.0.1:{port}")
    assert time.perf_counter() - started < 5
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        batch.check_ray_address(f"127.0.0.1:{listening.getsockname()[1]}")  # answers: fine
    batch.check_ray_address("ray://127.0.0.1:1")  # a client address: Ray's own checks
