"""`voicedesk asr eval`: WER after Whisper's normaliser, per-file errors, real-time factor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr.evaluation import (
    SPELLING_MAP,
    ManifestRow,
    english_normalizer,
    evaluate,
    normalize,
    read_manifest,
    word_errors,
)
from tests.conftest import JFK, SHARED_DATA, run_cli
from voicedesk.errors import VoicedeskError

DEV = SHARED_DATA / "asr" / "dev"


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def test_star_and_pound_are_spoken_before_normalising() -> None:
    assert normalize("Press * then # to hear your balance.") == (
        "press star then pound to hear your balance")
    assert normalize("Mr. Smith, colour, um, twenty five [noise]") == "mister smith color 25"


def test_the_vendored_spelling_map_is_whispers(tmp_path: Path) -> None:
    whisper_normalizers = pytest.importorskip("whisper.normalizers")
    shipped = Path(whisper_normalizers.__file__).parent / "english.json"
    assert json.loads(SPELLING_MAP.read_text()) == json.loads(shipped.read_text())
    assert "licen" in (SPELLING_MAP.parent / "README.md").read_text().lower()


def test_the_transformers_fallback_normalises_like_whisper() -> None:
    pytest.importorskip("whisper.normalizers")
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    fallback = EnglishTextNormalizer(json.loads(SPELLING_MAP.read_text()))
    whisper = english_normalizer()[0]
    for text in ["I'd like to cancel my broadband, it's $45.50 a month!",
                 "The organisation's centre on the 3rd floor, uh, hmm.",
                 "Twenty-one thousand and five (laughs) OK"]:
        assert fallback(text) == whisper(text)


def test_alignment_counts_match_a_hand_count() -> None:
    # press star to speak [to->with] [an deleted] agent: 1 substitution, 1 deletion.
    counts = word_errors(normalize("Press * to speak to an agent."),
                         normalize("press star to speak with agent"))
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == (1, 1, 0, 5)
    assert counts.wer == pytest.approx(100 * 2 / 7)
    assert word_errors("", "").wer == 0.0
    assert word_errors("", "hello").insertions == 1
    assert word_errors("two words", "").deletions == 2


def test_corpus_wer_pools_the_errors_of_all_files(tmp_path: Path) -> None:
    rows = [ManifestRow(tmp_path / "a.wav", "Press * to speak to an agent.", 1),
            ManifestRow(tmp_path / "b.wav", "My account number is #4521", 2)]
    heard = {"a.wav": "press star to speak with agent",
             "b.wav": "my count number is pound 4521 please"}
    report = evaluate(rows, lambda p: (heard[p.name], 2.0)).to_json()
    # a: 2 errors / 7 words; b: account->count, +please = 2 errors / 6 words. Pooled: 4 / 13.
    assert report["wer"] == pytest.approx(round(100 * 4 / 13, 2))
    assert [f["wer"] for f in report["files"]] == [pytest.approx(28.57), pytest.approx(33.33)]
    assert report["files"][1]["insertions"] == 1 and report["files"][1]["substitutions"] == 1


def test_the_real_time_factor_counts_the_recogniser_not_the_scoring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from asr import evaluation

    def slow_normalize(text: str) -> str:  # the normaliser's first import took ~2 s
        time.sleep(0.3)
        return text.lower()

    monkeypatch.setattr(evaluation, "normalize", slow_normalize)
    rows = [ManifestRow(tmp_path / "a.wav", "go forward", 1)]
    report = evaluate(rows, lambda p: ("go forward", 10.0)).to_json()
    assert report["rtf"] < 0.03, report  # 0.6 s of scoring over 10 s of audio would be 0.06


def test_manifest_header_relative_paths_and_blank_lines(tmp_path: Path) -> None:
    (tmp_path / "calls").mkdir()
    manifest = tmp_path / "calls" / "dev.tsv"
    manifest.write_text("file\ttext\none.wav\thello there\n\nsub/two.flac\tgood bye\n")
    rows = read_manifest(manifest)
    assert [(r.audio, r.reference) for r in rows] == [
        (tmp_path / "calls" / "one.wav", "hello there"),
        (tmp_path / "calls" / "sub" / "two.flac", "good bye")]


def test_the_shared_dev_transcripts_read_as_they_are() -> None:
    rows = read_manifest(DEV / "librispeech_kw" / "transcripts.tsv")
    assert len(rows) == 4 and all(r.audio.is_file() for r in rows)
    assert rows[2].reference == "HE COULD WAIT NO LONGER"


def test_a_line_without_a_tab_is_an_error_naming_the_line(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.tsv"
    manifest.write_text("a.wav\tfine\nb.wav  spaces instead of a tab\n")
    with pytest.raises(VoicedeskError, match="line 2 has no tab"):
        read_manifest(manifest)


def test_eval_cli_reports_wer_rtf_and_per_file_errors(home: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "dev.tsv"
    libri = DEV / "librispeech_kw"
    manifest.write_text(
        "file\treference\n"
        f"{JFK}\tAnd so my fellow Americans, ask not what your country can do for you, "
        "ask what you can do for your country.\n"
        f"{libri / '1089-134686-0000.flac'}\tHE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND "
        "CARROTS AND BRUISED POTATOES AND FAT MUTTON PIECES TO BE LADLED OUT IN THICK PEPPERED "
        "FLOUR FATTENED SAUCE\n"
        f"{tmp_path / 'missing.wav'}\twhatever\n")
    out = tmp_path / "scores.json"
    result = run_cli(["asr", "eval", str(manifest), "--json", str(out)], home)
    assert result.returncode == 1, result.stderr  # one file could not be scored
    assert "WER" in result.stdout and "missing.wav" in result.stdout
    report = json.loads(out.read_text())
    assert {"wer", "rtf", "files"} <= report.keys()
    scored = [f for f in report["files"] if "error" not in f]
    assert len(scored) == 2 and "does not exist" in report["files"][2]["error"]
    for f in scored:
        assert {"substitutions", "deletions", "insertions", "wer", "hypothesis"} <= f.keys()
    assert scored[0]["wer"] == 0.0  # the JFK excerpt, after normalising
    # The pooled WER is the word-level edit distance over the reference words, by hand.
    errors = sum(edit_distance(normalize(f["reference"]).split(),
                               normalize(f["hypothesis"]).split()) for f in scored)
    words = sum(len(normalize(f["reference"]).split()) for f in scored)
    assert report["wer"] == pytest.approx(100 * errors / words, abs=0.01)
    assert 0 < report["rtf"] < 2


def test_eval_cli_runs_on_a_shared_dev_manifest(home: Path) -> None:
    result = run_cli(["asr", "eval", str(DEV / "librispeech_kw" / "transcripts.tsv"),
                      "--json", "-"], home)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert len(report["files"]) == 4 and report["wer"] < 25  # tiny.en: about 5-15 % here
