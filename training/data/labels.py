"""A turn's current labels: what the call decided, overlaid by model labels, then by people.

Annotations never overwrite each other, so "the intent of turn 42" is a rule,
not a column: the latest reviewer's word (a review or an imported review)
wins; failing that, the latest model label; failing that, what the live call
recognised. Everything downstream (the review queue, exports, datasets)
reads turns through this one view.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from training.store.schema import Annotation, Call, Turn

FIELDS = ("intent", "slots", "transcript", "reply")
HUMAN_SOURCES = ("review", "import")


@dataclass
class TurnView:
    turn_id: int
    call_id: str
    index: int
    started_at: datetime
    transcript: str
    asr_confidence: float
    words: list[dict[str, Any]]
    intent: str
    confidence: float  # of the intent: the model's, or 1.0 once a person confirmed it
    slots: dict[str, str]
    reply: str
    caller_audio_sha256: str
    caller_start_s: float
    caller_end_s: float
    redactions: dict[str, int]
    label_source: str = "call"  # call | model | review | import (of the intent)
    label_author: str = ""
    reviewed: set[str] = field(default_factory=set)  # fields a person has labelled
    reviewers: dict[str, str] = field(default_factory=dict)  # field -> its latest reviewer
    model_labelled_by: set[str] = field(default_factory=set)  # model names with a label

    @property
    def intent_reviewed(self) -> bool:
        return "intent" in self.reviewed


def views(session: Session, call_ids: list[str] | None = None) -> list[TurnView]:
    """Current labels of every turn (of ``call_ids`` if given), in call then turn order."""
    stmt = select(Turn, Call.started_at).join(Call, Turn.call_id == Call.id)
    if call_ids is not None:
        stmt = stmt.where(Turn.call_id.in_(call_ids))
    stmt = stmt.order_by(Call.started_at, Call.id, Turn.index)
    out: dict[int, TurnView] = {}
    for turn, started_at in session.execute(stmt):
        out[turn.id] = TurnView(
            turn_id=turn.id, call_id=turn.call_id, index=turn.index, started_at=started_at,
            transcript=turn.transcript or "", asr_confidence=turn.asr_confidence or 0.0,
            words=list(turn.words or []), intent=turn.intent or "",
            confidence=turn.intent_confidence or 0.0, slots=dict(turn.slots or {}),
            reply=turn.reply or "", caller_audio_sha256=turn.caller_audio_sha256,
            caller_start_s=turn.caller_start_s, caller_end_s=turn.caller_end_s,
            redactions=dict(turn.redactions or {}))
    if not out:
        return []
    for chunk in _chunks(list(out), 500):
        rows = session.scalars(select(Annotation).where(Annotation.turn_id.in_(chunk))
                               .order_by(Annotation.id))
        for row in rows:
            _apply(out[row.turn_id], row)
    return list(out.values())


def _apply(view: TurnView, row: Annotation) -> None:
    human = row.source in HUMAN_SOURCES
    if row.source == "model":
        view.model_labelled_by.add(row.author)
        if row.field in view.reviewed:
            return  # a person's label outranks any later model label
    if row.field == "intent":
        view.intent = str(row.value)
        view.confidence = 1.0 if human else float(row.confidence or 0.0)
        view.label_source, view.label_author = row.source, row.author
    elif row.field == "transcript":
        view.transcript = str(row.value)
    elif row.field == "reply":
        view.reply = str(row.value)
    elif row.field == "slots" and isinstance(row.value, dict):
        view.slots = {str(k): str(v) for k, v in row.value.items()}
    if human:
        view.reviewed.add(row.field)
        view.reviewers[row.field] = row.author


def current_value(view: TurnView, name: str) -> Any:
    return {"intent": view.intent, "transcript": view.transcript, "reply": view.reply,
            "slots": view.slots}[name]


def call_ids(session: Session) -> list[str]:
    """Every call, oldest first: the order long jobs walk the store in."""
    return list(session.scalars(select(Call.id).order_by(Call.started_at, Call.id)))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
