"""A versioned dataset from reviewed call turns, public corpora and the knowledge base.

The folder layout is a contract with the fine-tuning code:

* ``train.jsonl``, ``validation.jsonl``, ``test.jsonl``: turn tasks
  ``{"id", "call_id", "source", "text", "intent", "slots", "reply"}``. Call
  turns have ``source`` "calls" and the domain's intents; public corpora have
  ``call_id`` null, ``source`` the corpus name and their own labels (see
  ``training.data.corpora``), so a trainer filters by ``source``.
* ``corpus.jsonl``: ``{"text", "source"}`` for continued pre-training: the
  knowledge base by section, reviewed conversations of *train* calls only
  (a test call seen in pre-training would leak), and general train text.
* ``asr/{train,validation,test}.jsonl``: ``{"id", "call_id", "audio", "text"}``
  with ``audio`` a path inside the folder (``asr/audio/<sha256>.flac``), the
  caller audio with personal data silenced; ``text`` leaves out what was
  silenced, so text and audio still agree. Turns below the ASR-confidence
  floor stay out of this part unless a reviewer corrected their transcript
  (they stay in the text tasks: a person read them and named the intent).
* ``manifest.json``: name, version, sources, split sizes, file checksums,
  statistics, the redaction and cleaning reports, the split seed.

Calls are split by a seeded hash of the call id, so a call is wholly in one
split and stays there when the dataset is rebuilt with more calls. All text
is redacted. The audio step is the long one: an interrupted build resumes
in the same folder, reusing the audio it already wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from asr.audio import to_int16
from training.data.clean import CleaningOptions, clean
from training.data.corpora import SPLITS, general_examples, knowledge_sections
from training.data.labels import TurnView, views
from training.data.pii import RedactionPolicy
from training.data.progress import Progress
from training.data.redact import RedactionReport, redact_view, redacted_audio
from training.store import CallStore
from training.store.schema import Dataset
from voicedesk.errors import VoicedeskError

FORMAT_VERSION = 1
MARKER = ".voicedesk-build"  # present while a build is unfinished: the folder may be resumed
_PLACEHOLDER = re.compile(r"\s*\[[A-Z_]+\]")


@dataclass(frozen=True)
class BuildOptions:
    name: str = "voicedesk"
    seed: int = 13
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, validation, test
    corpora_dir: Path | None = None  # folder with nlu/banking77, nlu/clinc150 ...
    general: tuple[str, ...] = ("banking77", "clinc150")  # used only with corpora_dir
    general_limit: int = 1000  # train rows per corpus; validation/test get a quarter
    knowledge: bool = True
    asr: bool = True
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)
    policy: RedactionPolicy = field(default_factory=RedactionPolicy)


@dataclass
class BuildResult:
    path: Path
    name: str
    version: int
    manifest: dict[str, Any]
    audio_reused: int = 0  # files an interrupted build had already written


def split_of(call_id: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """The split a call belongs to: a seeded hash, so it never changes for that call."""
    digest = hashlib.sha256(f"{seed}:{call_id}".encode()).hexdigest()
    x = int(digest[:15], 16) / 16**15
    total = sum(fractions)
    if x < fractions[0] / total:
        return "train"
    return "validation" if x < (fractions[0] + fractions[1]) / total else "test"


def build_dataset(store: CallStore, out: Path, options: BuildOptions, intents: list[str],
                  knowledge_dir: Path | None, *, show_progress: bool = True,
                  on_audio: Callable[[int], None] | None = None) -> BuildResult:
    """Write the dataset to ``out`` and record it as the next version of ``options.name``."""
    with Session(store.engine) as session:
        turns = views(session)
    reviewed = [v for v in turns if v.intent_reviewed]
    if not reviewed:
        raise VoicedeskError(
            f"no reviewed turns to build a dataset from: the store has {len(turns)} turn(s), "
            f"none with a reviewed intent. Review some first: `voicedesk data review-export "
            f"--out queue.jsonl`, correct or confirm the intents, then `voicedesk data "
            f"review-import queue.jsonl --reviewer NAME`")
    # A person read these turns and named their intent, so a low ASR confidence does not
    # keep them out of the text tasks; it still keeps them out of the ASR part, where the
    # transcript is the target (unless a reviewer corrected that transcript too).
    cleaned = clean(reviewed, replace(options.cleaning, min_asr_confidence=0.0))
    heard = [v for v in cleaned.kept if "transcript" in v.reviewed
             or v.asr_confidence >= options.cleaning.min_asr_confidence]
    if not cleaned.kept:
        raise VoicedeskError(
            f"all {len(reviewed)} reviewed turn(s) were removed by cleaning "
            f"({_reasons(cleaned.counts)}); relax the filters (see `voicedesk data clean "
            f"--help`) or review more turns")
    general, used = [], {}
    if options.corpora_dir is not None and options.general:  # read before anything is written
        general, used = general_examples(options.corpora_dir, options.general, options.seed,
                                         options.general_limit)
    _prepare(out)

    report = RedactionReport()
    examples: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    conversations: dict[str, list[str]] = {}
    split_calls: dict[str, set[str]] = {s: set() for s in SPLITS}
    for view in cleaned.kept:
        split = split_of(view.call_id, options.seed, options.fractions)
        shown = redact_view(view, options.policy)
        report.add(shown.counts)
        report.turns_scanned += 1
        report.turns_redacted += bool(shown.counts)
        examples[split].append({"id": f"turn-{view.turn_id}", "call_id": view.call_id,
                                "source": "calls", "text": shown.transcript,
                                "intent": view.intent, "slots": shown.slots,
                                "reply": shown.reply or None})
        split_calls[split].add(view.call_id)
        if split == "train":
            lines = conversations.setdefault(view.call_id, [])
            lines.append(f"Caller: {shown.transcript}")
            if shown.reply:
                lines.append(f"Agent: {shown.reply}")

    sources: dict[str, Any] = {"calls": {
        "turns_in_store": len(turns), "reviewed_turns": len(reviewed),
        "turns_used": len(cleaned.kept), "calls_used": len({v.call_id for v in cleaned.kept})}}
    corpus: list[dict[str, str]] = []
    if options.knowledge and knowledge_dir is not None and knowledge_dir.is_dir():
        sections = knowledge_sections(knowledge_dir)
        corpus += [{"text": text, "source": source} for text, source in sections]
        sources["knowledge"] = {"files": sorted({s.split(":", 1)[1] for _, s in sections}),
                                "sections": len(sections)}
    corpus += [{"text": "\n".join(lines), "source": "calls"}
               for _, lines in sorted(conversations.items())]
    label_spaces: dict[str, list[str]] = {"calls": sorted(intents)}
    if general:
        counters: Counter[str] = Counter()
        for ex in general:
            counters[ex.source] += 1
            examples[ex.split].append({"id": f"{ex.source}-{counters[ex.source]}",
                                       "call_id": None, "source": ex.source, "text": ex.text,
                                       "intent": ex.intent, "slots": {}, "reply": None})
            if ex.split == "train":
                corpus.append({"text": ex.text, "source": ex.source})
        for name in used:
            label_spaces[name] = sorted({ex.intent for ex in general if ex.source == name})
        sources.update(used)

    files: dict[str, Path] = {}
    for split in SPLITS:
        files[f"{split}.jsonl"] = _write_jsonl(out / f"{split}.jsonl", examples[split])
    files["corpus.jsonl"] = _write_jsonl(out / "corpus.jsonl", corpus)

    asr_rows, asr_seconds, reused = _write_asr(store, out, heard, options, report,
                                               show_progress, on_audio)
    for split in SPLITS:
        files[f"asr/{split}.jsonl"] = _write_jsonl(out / "asr" / f"{split}.jsonl",
                                                   asr_rows[split])
    wanted = {Path(r["audio"]).name for split in SPLITS for r in asr_rows[split]}
    for path in sorted((out / "asr" / "audio").glob("*.flac")):
        if path.name in wanted:
            files[f"asr/audio/{path.name}"] = path
        else:
            path.unlink()  # left by an interrupted build of different turns

    stats = {
        "intents": {s: dict(sorted(Counter(e["intent"] for e in examples[s]
                                           if e["source"] == "calls").items()))
                    for s in SPLITS},
        "sources": {s: dict(sorted(Counter(e["source"] for e in examples[s]).items()))
                    for s in SPLITS},
        "calls": {s: len(split_calls[s]) for s in SPLITS},
        "mean_words": {s: round(float(np.mean([len(e["text"].split()) for e in examples[s]]))
                                if examples[s] else 0.0, 2) for s in SPLITS},
        "asr_seconds": {s: round(asr_seconds[s], 2) for s in SPLITS},
        "corpus": dict(sorted(Counter(c["source"].split(":")[0] for c in corpus).items())),
    }
    manifest: dict[str, Any] = {
        "name": options.name, "version": 0, "format": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": options.seed, "fractions": dict(zip(SPLITS, options.fractions, strict=True)),
        "split_by": "call_id (sha256 of seed:call_id)",
        "sources": sources, "label_spaces": label_spaces,
        "splits": {s: {"examples": len(examples[s]), "asr": len(asr_rows[s])} for s in SPLITS},
        "corpus": len(corpus),
        "files": {name: {"sha256": _sha256(path), "bytes": path.stat().st_size}
                  for name, path in sorted(files.items())},
        "statistics": stats,
        "redaction": {**report.to_json(), "policy": sorted(options.policy.kinds)},
        "cleaning": {**cleaned.to_json(),
                     "asr_low_confidence": len(cleaned.kept) - len(heard),
                     "min_asr_confidence": options.cleaning.min_asr_confidence},
    }
    version = _record(store, out, manifest)
    return BuildResult(out, options.name, version, manifest, reused)


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items() if n) or "none"


def _prepare(out: Path) -> None:
    """A new or empty folder, or the folder of an unfinished build (resumed)."""
    if (out / "manifest.json").exists():
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        raise VoicedeskError(f"{out} already holds dataset {manifest.get('name')!r} version "
                             f"{manifest.get('version')}; choose another --out (datasets are "
                             f"never overwritten)")
    if out.exists() and not out.is_dir():
        raise VoicedeskError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise VoicedeskError(f"--out {out} is not empty and is not an unfinished dataset "
                             f"build; choose a new folder")
    (out / "asr" / "audio").mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("build in progress; run the same command again to resume\n")


def _write_asr(store: CallStore, out: Path, kept: list[TurnView], options: BuildOptions,
               report: RedactionReport, show_progress: bool,
               on_audio: Callable[[int], None] | None
               ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float], int]:
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    seconds = dict.fromkeys(SPLITS, 0.0)
    reused = 0
    if not options.asr:
        return rows, seconds, reused
    with Progress("dataset audio", len(kept), "turns", show_progress) as bar:
        for n, view in enumerate(kept, 1):
            audio = redacted_audio(store, view, options.policy)
            bar.update(1)
            if audio is None:
                continue
            if audio.whole_turn:
                report.whole_turns_silenced += 1  # nothing left to hear: not an ASR example
                continue
            report.audio_seconds_silenced += sum(b - a for a, b in audio.ranges)
            pcm = to_int16(audio.samples)
            digest = hashlib.sha256(audio.sample_rate.to_bytes(4, "little")
                                    + pcm.tobytes()).hexdigest()
            path = out / "asr" / "audio" / f"{digest}.flac"
            if path.exists():
                reused += 1
            else:
                _write_flac(path, pcm, audio.sample_rate)
            text = _PLACEHOLDER.sub("", redact_view(view, options.policy).transcript).strip()
            split = split_of(view.call_id, options.seed, options.fractions)
            rows[split].append({"id": f"turn-{view.turn_id}", "call_id": view.call_id,
                                "audio": f"asr/audio/{digest}.flac", "text": text})
            seconds[split] += len(pcm) / audio.sample_rate
            if on_audio is not None:
                on_audio(n)
    return rows, seconds, reused


def _write_flac(path: Path, pcm: np.ndarray, rate: int) -> None:
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), pcm, rate, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record(store: CallStore, out: Path, manifest: dict[str, Any]) -> int:
    """Take the next version number, write the manifest, and register the dataset at once."""
    with Session(store.engine) as session, session.begin():
        latest = session.scalar(select(func.max(Dataset.version))
                                .where(Dataset.name == manifest["name"]))
        version = (latest or 0) + 1
        manifest["version"] = version
        path = out / "manifest.json"
        tmp = out / ".manifest.json.partial"
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
        session.add(Dataset(name=manifest["name"], version=version,
                            created_at=datetime.now(UTC), path=str(out.resolve()),
                            manifest={k: v for k, v in manifest.items() if k != "files"},
                            stats=manifest["statistics"]))
        session.flush()
        os.replace(tmp, path)
    (out / MARKER).unlink(missing_ok=True)
    return version
