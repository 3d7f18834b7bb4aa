"""Word error rate and speed of the configured transcriber on a manifest of references.

WER is computed the way the Whisper paper reports it, so our numbers compare
with published ones: both texts go through Whisper's ``EnglishTextNormalizer``
(lower case, bracketed noise and fillers dropped, numbers as digits, British
to American spelling), then ``jiwer`` aligns the words. Phone menus say "star"
and "pound", which the normaliser would delete as punctuation, so ``*`` and
``#`` are spelled out first.

Each file is transcribed through the batch path (``asr.batch``), the one
analysts use, and the real-time factor is that path's processing time over the
audio's duration (models loaded beforehand, not counted).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from voicedesk.errors import VoicedeskError

SPELLING_MAP = Path(__file__).parent / "normalizer" / "english.json"
HEADER_FIELDS = {"file", "files", "path", "audio", "audio_path", "audio_filepath", "filename",
                 "wav", "utt", "id"}


@dataclass(frozen=True)
class ManifestRow:
    audio: Path
    reference: str
    line: int


def read_manifest(path: Path) -> list[ManifestRow]:
    """Rows of ``audio path<TAB>reference``; paths relative to the manifest's folder.

    A first line whose first field is a column name (``file``, ``path``,
    ``audio``...) is a header and is skipped; blank lines are ignored.
    """
    if not path.is_file():
        raise VoicedeskError(f"manifest {path} does not exist; expected a TSV of "
                             f"'audio path<TAB>reference text' lines")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise VoicedeskError(f"manifest {path} is not UTF-8 text; save it as UTF-8") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise VoicedeskError(f"manifest {path} line {number} has no tab: expected "
                                 f"'audio path<TAB>reference text', got {line[:60]!r}")
        audio, reference = line.split("\t", 1)
        audio = audio.strip()
        if not rows and audio.lower() in HEADER_FIELDS and not (path.parent / audio).exists():
            continue
        rows.append(ManifestRow((path.parent / audio).expanduser(), reference.strip(), number))
    if not rows:
        raise VoicedeskError(f"manifest {path} lists no files")
    return rows


@cache
def english_normalizer() -> tuple[Callable[[str], str], str]:
    """Whisper's English normaliser, and which implementation serves it.

    openai-whisper is an optional extra; without it, transformers' copy of the
    same code is used with Whisper's spelling map, vendored in asr/normalizer.
    """
    try:
        from whisper.normalizers import EnglishTextNormalizer

        return EnglishTextNormalizer(), "whisper.normalizers.EnglishTextNormalizer"
    except ImportError:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

        spelling = json.loads(SPELLING_MAP.read_text(encoding="utf-8"))
        return (EnglishTextNormalizer(spelling),
                "transformers EnglishTextNormalizer + whisper english.json")


def normalize(text: str) -> str:
    """Text as WER compares it: ``*``/``#`` spoken, then Whisper's English normaliser."""
    text = re.sub(r"\*", " star ", text)
    text = re.sub(r"#", " pound ", text)
    return english_normalizer()[0](text)


@dataclass(frozen=True)
class WordErrors:
    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def reference_words(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Percent; an empty reference scores 0 if nothing was heard, else 100."""
        if self.reference_words == 0:
            return 0.0 if self.insertions == 0 else 100.0
        return 100.0 * self.errors / self.reference_words

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(self.substitutions + other.substitutions,
                          self.deletions + other.deletions, self.insertions + other.insertions,
                          self.hits + other.hits)


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Alignment counts between two already normalised texts (jiwer)."""
    ref, hyp = reference.split(), hypothesis.split()
    if not ref:
        return WordErrors(0, 0, len(hyp), 0)
    if not hyp:
        return WordErrors(0, len(ref), 0, 0)
    import jiwer

    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return WordErrors(out.substitutions, out.deletions, out.insertions, out.hits)


@dataclass(frozen=True)
class FileScore:
    path: str
    reference: str
    hypothesis: str = ""
    counts: WordErrors = WordErrors(0, 0, 0, 0)
    duration: float = 0.0
    processing_s: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "reference": self.reference}
        if self.error is not None:
            return {**out, "error": self.error}
        return {**out, "hypothesis": self.hypothesis,
                "reference_normalized": normalize(self.reference),
                "hypothesis_normalized": normalize(self.hypothesis),
                "reference_words": self.counts.reference_words,
                "substitutions": self.counts.substitutions,
                "deletions": self.counts.deletions, "insertions": self.counts.insertions,
                "hits": self.counts.hits, "wer": round(self.counts.wer, 2),
                "duration": round(self.duration, 3),
                "rtf": round(self.processing_s / self.duration, 4) if self.duration else 0.0}


@dataclass(frozen=True)
class EvalReport:
    manifest: str
    asr: str
    files: tuple[FileScore, ...]

    @property
    def scored(self) -> list[FileScore]:
        return [f for f in self.files if f.error is None]

    @property
    def totals(self) -> WordErrors:
        total = WordErrors(0, 0, 0, 0)
        for score in self.scored:
            total = total + score.counts
        return total

    @property
    def rtf(self) -> float:
        audio = sum(f.duration for f in self.scored)
        return sum(f.processing_s for f in self.scored) / audio if audio else 0.0

    def to_json(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "wer": round(totals.wer, 2), "rtf": round(self.rtf, 4),
            "reference_words": totals.reference_words, "substitutions": totals.substitutions,
            "deletions": totals.deletions, "insertions": totals.insertions,
            "audio_s": round(sum(f.duration for f in self.scored), 3),
            "processing_s": round(sum(f.processing_s for f in self.scored), 3),
            "failed": len(self.files) - len(self.scored),
            "asr": self.asr, "normalizer": english_normalizer()[1], "manifest": self.manifest,
            "files": [f.to_dict() for f in self.files],
        }

    def table(self) -> str:
        header = (f"{'file':<44} {'words':>6} {'sub':>5} {'del':>5} {'ins':>5} {'WER %':>7} "
                  f"{'RTF':>6}")
        lines = [header, "-" * len(header)]
        for f in self.files:
            name = Path(f.path).name
            name = name if len(name) <= 44 else "…" + name[-43:]  # the end tells files apart
            if f.error is not None:
                lines.append(f"{name:<44} error: {f.error}")
                continue
            c = f.counts
            rtf = f.processing_s / f.duration if f.duration else 0.0
            lines.append(f"{name:<44} {c.reference_words:>6} {c.substitutions:>5} "
                         f"{c.deletions:>5} {c.insertions:>5} {c.wer:>7.2f} {rtf:>6.3f}")
        t = self.totals
        lines.append("-" * len(header))
        lines.append(f"{'total (' + str(len(self.scored)) + ' files)':<44} {t.reference_words:>6} "
                     f"{t.substitutions:>5} {t.deletions:>5} {t.insertions:>5} {t.wer:>7.2f} "
                     f"{self.rtf:>6.3f}")
        return "\n".join(lines)


def evaluate(rows: list[ManifestRow], transcribe: Callable[[Path], tuple[str, float]],
             manifest: str = "", asr: str = "",
             on_file: Callable[[FileScore], None] | None = None) -> EvalReport:
    """Score each row; ``transcribe`` returns (text, audio seconds) or raises VoicedeskError."""
    scores = []
    for row in rows:
        started = time.perf_counter()
        try:
            hypothesis, duration = transcribe(row.audio)
        except VoicedeskError as exc:
            score = FileScore(str(row.audio), row.reference, error=" ".join(str(exc).split()))
        else:
            # the real-time factor is the recogniser's: scoring (and the normaliser's first
            # import, about 2 s) is not part of it
            spent = time.perf_counter() - started
            score = FileScore(str(row.audio), row.reference, hypothesis,
                              word_errors(normalize(row.reference), normalize(hypothesis)),
                              duration, spent)
        scores.append(score)
        if on_file is not None:
            on_file(score)
    return EvalReport(manifest, asr, tuple(scores))
