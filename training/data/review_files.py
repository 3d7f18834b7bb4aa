"""The review queue as files a person works through: JSON Lines out, corrections back in.

Everything exported is redacted first. An import applies what it can and
reports each row it could not use with its line number, so one bad row
never costs a reviewer the rest of the file. Every imported row is a review
of the turn's intent (the value given, or the suggestion left as it was); a
transcript, reply or slots given differently from what was exported is a
correction of that field too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from training.data.annotate import record_review
from training.data.labels import TurnView, views
from training.data.pii import RedactionPolicy, redact_text
from training.data.redact import redact_slots, redact_view
from training.store import CallStore
from voicedesk.errors import VoicedeskError


@dataclass
class ImportReport:
    rows: int = 0  # rows read (good and bad)
    reviewed_turns: int = 0
    annotations: int = 0  # rows written to the store
    unchanged: int = 0  # the same reviewer said the same thing before
    skipped: int = 0  # rows with nothing to apply (a task nobody annotated)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, what was wrong)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "reviewed_turns": self.reviewed_turns,
                "annotations": self.annotations, "unchanged": self.unchanged,
                "skipped": self.skipped,
                "errors": [{"line": line, "error": error} for line, error in self.errors]}


@dataclass(frozen=True)
class ReviewRow:
    """One reviewer decision as read from a file, before it is checked against the store."""

    line: int
    turn_id: Any
    reviewer: str | None
    values: dict[str, Any]  # field -> value, only the fields the row carries


def export_row(view: TurnView, policy: RedactionPolicy, audio: str | None = None
               ) -> dict[str, Any]:
    clean = redact_view(view, policy)
    row: dict[str, Any] = {
        "turn_id": view.turn_id, "call_id": view.call_id, "index": view.index,
        "text": clean.transcript, "intent": view.intent, "confidence": round(view.confidence, 4),
        "label_source": view.label_source, "transcript": clean.transcript,
        "slots": clean.slots, "reply": clean.reply, "reviewer": None,
    }
    if audio is not None:
        row["audio"] = audio
    return row


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    n = 0
    with tmp.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_jsonl_rows(path: Path) -> tuple[list[ReviewRow], list[tuple[int, str]]]:
    """Rows of a review JSONL file, and (line, problem) for lines that are not rows."""
    rows: list[ReviewRow] = []
    errors: list[tuple[int, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VoicedeskError(f"cannot read review file {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(data, dict):
            errors.append((number, f"expected a JSON object, got {type(data).__name__}"))
            continue
        values = {k: data[k] for k in ("intent", "transcript", "reply", "slots") if k in data}
        rows.append(ReviewRow(number, data.get("turn_id"), data.get("reviewer"), values))
    return rows, errors


def apply_rows(store: CallStore, rows: list[ReviewRow], intents: set[str],
               policy: RedactionPolicy, default_reviewer: str | None,
               report: ImportReport, source: str = "import") -> ImportReport:
    """Check each row against the store and the intent catalogue; record what is valid."""
    with Session(store.engine) as session, session.begin():
        by_id = {v.turn_id: v for v in views(session)}
        for row in rows:
            report.rows += 1
            problem, turn_id = _check(row, by_id, intents, default_reviewer)
            if problem:
                report.errors.append((row.line, problem))
                continue
            if not row.values:
                report.skipped += 1
                continue
            view = by_id[turn_id]
            reviewer = str(row.reviewer or default_reviewer)
            shown = redact_view(view, policy)
            written = 0
            for name, value in row.values.items():
                if name == "transcript" or name == "reply":
                    if value == getattr(shown, name):
                        continue  # left as exported: not a correction
                    value = redact_text(str(value), policy).text
                elif name == "slots":
                    if value == shown.slots:
                        continue
                    value = redact_slots({str(k): str(v) for k, v in value.items()}, policy)[0]
                written += record_review(session, view, name, value, reviewer, source) is not None
            if "intent" not in row.values and written == 0:
                report.unchanged += 1
                continue
            report.reviewed_turns += 1
            report.annotations += written
            if written == 0:
                report.unchanged += 1
    report.errors.sort()
    return report


def _check(row: ReviewRow, by_id: dict[int, TurnView], intents: set[str],
           default_reviewer: str | None) -> tuple[str | None, int]:
    """What is wrong with the row (None if nothing), and its turn id as a number."""
    problem = _problem(row, by_id, intents, default_reviewer)
    return problem, (int(row.turn_id) if problem is None else -1)


def _problem(row: ReviewRow, by_id: dict[int, TurnView], intents: set[str],
             default_reviewer: str | None) -> str | None:
    turn_id = row.turn_id
    if isinstance(turn_id, str) and turn_id.strip().isdigit():
        turn_id = int(turn_id)
    if not isinstance(turn_id, int) or isinstance(turn_id, bool):
        return f"turn_id must be a whole number, got {row.turn_id!r}"
    if turn_id not in by_id:
        return f"turn {turn_id} is not in the store (exported from another database?)"
    if not (row.reviewer or default_reviewer):
        return "no reviewer: add \"reviewer\" to the row or pass --reviewer"
    if not isinstance(row.reviewer, (str, type(None))):
        return f"reviewer must be text, got {row.reviewer!r}"
    intent = row.values.get("intent")
    if "intent" in row.values and (not isinstance(intent, str) or intent not in intents):
        return (f"unknown intent {intent!r}; the catalogue has "
                f"{', '.join(sorted(intents)[:8])}{', ...' if len(intents) > 8 else ''}")
    for name in ("transcript", "reply"):
        if name in row.values and not isinstance(row.values[name], str):
            return f"{name} must be text, got {type(row.values[name]).__name__}"
    if "slots" in row.values and not isinstance(row.values["slots"], dict):
        return f"slots must be an object of name: value, got {row.values['slots']!r}"
    return None
