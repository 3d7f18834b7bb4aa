"""Labels from the current models, a review queue ordered by doubt, and reviewers' corrections.

Model labels and reviews are both rows in ``annotations``; nothing is
overwritten, so each correction keeps the value it replaced and who made it.
Auto-labelling commits turn by turn and skips turns the same model has already
labelled: an interrupted run picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from training.data.clean import CleaningOptions, clean
from training.data.labels import FIELDS, TurnView, current_value, views
from training.data.pci import CARD_ONLY
from training.data.pii import redact_text
from training.data.progress import Progress
from training.store import CallStore
from training.store.schema import Annotation


class Understands(Protocol):
    """What auto-labelling needs of a model: ``IntentRecognizer.understand`` fits."""

    def __call__(self, text: str) -> Any:  # -> .intent: str, .confidence: float
        ...


@dataclass
class AutoLabelReport:
    labelled: int = 0
    skipped_done: int = 0  # already labelled by this model (an earlier, interrupted run)
    skipped_empty: int = 0
    intents: dict[str, int] = field(default_factory=dict)


def model_name(assistant: Any) -> str:
    """Who a model label is from: the LLM and the embeddings that pick its few-shot examples."""
    described = assistant.describe()
    return f"{described['llm']}+{described['embeddings']}"[:128]


def auto_label(store: CallStore, understand: Understands, author: str, *,
               show_progress: bool = True,
               on_turn: Callable[[int], None] | None = None) -> AutoLabelReport:
    """Label every turn's intent with ``understand``; ``on_turn(n)`` after each commit."""
    report = AutoLabelReport()
    with Session(store.engine) as session:
        todo = views(session)
    with Progress("auto-labelling", len(todo), "turns", show_progress) as bar:
        done = 0
        for view in todo:
            if author in view.model_labelled_by:
                report.skipped_done += 1
                bar.update(1)
                continue
            if not view.transcript.strip():
                report.skipped_empty += 1
                bar.update(1)
                continue
            result = understand(view.transcript)
            with Session(store.engine) as session, session.begin():
                session.add(Annotation(turn_id=view.turn_id, field="intent",
                                       value=result.intent, previous=view.intent or None,
                                       confidence=float(result.confidence), source="model",
                                       author=author, created_at=datetime.now(UTC)))
            report.labelled += 1
            report.intents[result.intent] = report.intents.get(result.intent, 0) + 1
            bar.update(1)
            done += 1
            if on_turn is not None:
                on_turn(done)
    return report


def review_queue(store: CallStore, options: CleaningOptions | None = None,
                 limit: int | None = None, include_reviewed: bool = False) -> list[TurnView]:
    """Unreviewed turns fit to learn from, least confident intent first.

    Reviewing the turns the model is least sure of first buys the most
    accuracy per reviewer hour (uncertainty sampling).
    """
    with Session(store.engine) as session:
        turns = views(session)
    kept = clean(turns, options).kept if options is not None else turns
    queue = [v for v in kept if include_reviewed or not v.intent_reviewed]
    queue.sort(key=lambda v: (v.confidence, v.turn_id))
    return queue[:limit] if limit is not None else queue


def record_review(session: Session, view: TurnView, name: str, value: Any, reviewer: str,
                  source: str = "review") -> Annotation | None:
    """A reviewer's label for one field, keeping the value it replaces.

    Confirming the current value is recorded too (it makes the turn reviewed);
    the same reviewer giving the same value again adds nothing, so importing a
    file twice is harmless.
    """
    if name not in FIELDS:
        raise ValueError(f"unknown field {name!r}; one of {', '.join(FIELDS)}")
    value = _no_card_numbers(value)  # PCI DSS: whatever a caller of this passes
    previous = current_value(view, name)
    if previous == value and view.reviewers.get(name) == reviewer:
        return None
    row = Annotation(turn_id=view.turn_id, field=name, value=value, previous=previous,
                     confidence=None, source=source, author=reviewer[:128],
                     created_at=datetime.now(UTC))
    session.add(row)
    view.reviewed.add(name)
    view.reviewers[name] = reviewer
    if name == "intent":
        view.intent, view.confidence = str(value), 1.0
        view.label_source, view.label_author = source, reviewer
    elif name == "transcript":
        view.transcript = str(value)
    elif name == "reply":
        view.reply = str(value)
    elif name == "slots":
        view.slots = dict(value)
    return row


def _no_card_numbers(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value, CARD_ONLY).text
    if isinstance(value, dict):
        return {k: _no_card_numbers(v) for k, v in value.items()}
    return value
