"""General data mixed into a dataset: public intent corpora and the domain's knowledge base.

Public corpora keep their own label space (Banking77's 77 intents, CLINC150's
150 plus ``oos``) and their own train/test split, never re-split: their test
rows stay test rows. A trainer tells them apart by ``source``; mapping their
labels onto the telecom catalogue would be a guess (CLINC150's ``pay_bill``
is not quite ours) that a trainer can still make, but cannot undo.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voicedesk.errors import VoicedeskError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class GeneralExample:
    source: str
    split: str
    text: str
    intent: str


def _stable(seed: int, text: str) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()
    return int(digest[:15], 16) / 16**15


def _folder(data_dir: Path, name: str) -> Path | None:
    for candidate in (data_dir / "nlu" / name, data_dir / name):
        if candidate.is_dir():
            return candidate
    return None


def banking77(folder: Path, seed: int) -> Iterator[GeneralExample]:
    """train.csv and test.csv; a tenth of train (by a seeded hash) becomes validation."""
    for name, default in (("train.csv", "train"), ("test.csv", "test")):
        with (folder / name).open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text, label = (row.get("text") or "").strip(), (row.get("category") or "").strip()
                if not text or not label:
                    continue
                split = default
                if default == "train" and _stable(seed, text) < 0.1:
                    split = "validation"
                yield GeneralExample("banking77", split, text, label)


def clinc150(folder: Path, seed: int) -> Iterator[GeneralExample]:
    """data_full.json: train/val/test and the out-of-scope rows (label ``oos``)."""
    data = json.loads((folder / "data_full.json").read_text(encoding="utf-8"))
    for key, split in (("train", "train"), ("val", "validation"), ("test", "test"),
                       ("oos_train", "train"), ("oos_val", "validation"),
                       ("oos_test", "test")):
        for text, label in data.get(key, []):
            yield GeneralExample("clinc150", split, str(text), str(label))


READERS = {"banking77": banking77, "clinc150": clinc150}


def general_examples(data_dir: Path, names: tuple[str, ...], seed: int, limit: int
                     ) -> tuple[list[GeneralExample], dict[str, dict[str, object]]]:
    """Up to ``limit`` train rows per corpus (a quarter of that for validation and test),
    a seeded sample; and, per corpus, where it came from and how much was taken."""
    out: list[GeneralExample] = []
    used: dict[str, dict[str, object]] = {}
    for name in names:
        if name not in READERS:
            raise VoicedeskError(f"unknown general corpus {name!r}; known: "
                                 f"{', '.join(sorted(READERS))}")
        folder = _folder(data_dir, name)
        if folder is None:
            raise VoicedeskError(f"general corpus {name!r} not found under {data_dir} (looked "
                                 f"for nlu/{name}/ and {name}/); pass --corpora DIR or leave "
                                 f"it out with --general none")
        try:
            rows = list(READERS[name](folder, seed))
        except (OSError, ValueError, KeyError) as exc:
            raise VoicedeskError(f"general corpus {name!r} in {folder} cannot be read: "
                                 f"{exc}") from None
        taken: dict[str, int] = {}
        for split in SPLITS:
            cap = limit if split == "train" else max(1, limit // 4)
            part = sorted((r for r in rows if r.split == split),
                          key=lambda r: _stable(seed, r.text))[:cap]
            out += part
            taken[split] = len(part)
        used[name] = {"path": folder.name, "rows_available": len(rows), "taken": taken,
                      "labels": len({r.intent for r in rows})}
    return out, used


def knowledge_sections(folder: Path) -> list[tuple[str, str]]:
    """(text, source) per ``##`` section of each Markdown file, for continued pre-training."""
    out: list[tuple[str, str]] = []
    for path in sorted(folder.glob("*.md")):
        # a section's "? question [answer words]" lines: the question, as callers ask it
        text = re.sub(r"^\?\s*(.*?)\s*(?:\[[^\]]*\])?\s*$", r"\1",
                      path.read_text(encoding="utf-8"), flags=re.M)
        for part in re.split(r"\n(?=#{1,3} )", text):
            if part.strip():
                out.append((part.strip(), f"knowledge:{path.name}"))
    return out
