"""Redaction of what leaves the store, and of the store itself.

Two uses of one detector (``training.data.pii``):

* ``redact_view``: every export and dataset passes each turn through it, so
  nothing personal reaches a file whatever the store holds.
* ``redact_store``: scrubs stored calls in place (transcripts, words, replies,
  slots, reviewers' annotations, and the caller audio of the turn and of the
  whole call), for an operator whose retention policy says personal data
  must not stay. It walks the store call by call, one transaction per call,
  and a redacted call holds nothing left to find, so an interrupted run
  resumes by simply running again. Superseded audio files are deleted once
  no row refers to them.

Reports hold counts per kind, never a value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from training.data.labels import TurnView, call_ids
from training.data.pii import RedactionPolicy, redact_text
from training.data.progress import Progress
from training.data.silence import redact_words, silence, silenced_seconds
from training.store import CallStore
from training.store.schema import Annotation, Call, Turn

# Slots that hold personal data by name, whatever their value looks like.
SLOT_KINDS = {"account_number": "account_number", "pin": "pin", "date_of_birth": "date_of_birth",
              "phone_number": "phone_number", "email": "email", "card_number": "card_number"}
WITHHELD = "[withheld]"


@dataclass
class RedactionReport:
    """What was redacted: counts per kind and per place, never the values."""

    counts: dict[str, int] = field(default_factory=dict)
    turns_scanned: int = 0
    turns_redacted: int = 0
    calls_scanned: int = 0
    calls_redacted: int = 0
    audio_seconds_silenced: float = 0.0
    whole_turns_silenced: int = 0  # personal data the word times could not place
    reply_audio_dropped: int = 0  # replies whose text changed: their audio said it too
    annotations_redacted: int = 0
    summaries_redacted: int = 0  # call summaries (for agents and analysts) that held some

    def add(self, counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "total": sum(self.counts.values()),
                "turns_scanned": self.turns_scanned, "turns_redacted": self.turns_redacted,
                "calls_scanned": self.calls_scanned, "calls_redacted": self.calls_redacted,
                "audio_seconds_silenced": round(self.audio_seconds_silenced, 2),
                "whole_turns_silenced": self.whole_turns_silenced,
                "reply_audio_dropped": self.reply_audio_dropped,
                "annotations_redacted": self.annotations_redacted,
                "summaries_redacted": self.summaries_redacted}


@dataclass
class RedactedView:
    transcript: str
    reply: str
    slots: dict[str, str]
    counts: dict[str, int]


def redact_slots(slots: dict[str, str], policy: RedactionPolicy) -> tuple[dict[str, str],
                                                                           dict[str, int]]:
    out: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, value in slots.items():
        kind = SLOT_KINDS.get(name)
        text = str(value)
        if kind in policy.kinds and text and text != WITHHELD and text != policy.mark(kind):
            out[name] = policy.mark(kind)
            counts[kind] = counts.get(kind, 0) + 1
            continue
        found = redact_text(text, policy)
        out[name] = found.text
        for k, n in found.counts.items():
            counts[k] = counts.get(k, 0) + n
    return out, counts


def redact_view(view: TurnView, policy: RedactionPolicy) -> RedactedView:
    """The turn's current labels as they may leave the store."""
    text = redact_text(view.transcript, policy)
    reply = redact_text(view.reply, policy)
    slots, slot_counts = redact_slots(view.slots, policy)
    counts: dict[str, int] = {}
    for part in (text.counts, reply.counts, slot_counts):
        for kind, n in part.items():
            counts[kind] = counts.get(kind, 0) + n
    return RedactedView(text.text, reply.text, slots, counts)


def redact_store(store: CallStore, policy: RedactionPolicy, *, dry_run: bool = False,
                 show_progress: bool = True,
                 on_call: Callable[[int], None] | None = None) -> RedactionReport:
    """Scrub every stored call; ``on_call(n)`` runs after the n-th call is committed."""
    report = RedactionReport()
    with Session(store.engine) as session:
        ids = call_ids(session)
    with Progress("redacting", len(ids), "calls", show_progress) as bar:
        for n, call_id in enumerate(ids, 1):
            _redact_call(store, call_id, policy, report, dry_run)
            bar.update(1, redacted=report.calls_redacted)
            if on_call is not None:
                on_call(n)
    return report


def _redact_call(store: CallStore, call_id: str, policy: RedactionPolicy,
                 report: RedactionReport, dry_run: bool) -> None:
    stale: set[str] = set()
    with Session(store.engine) as session, session.begin():
        call = session.scalars(select(Call).where(Call.id == call_id)
                               .options(selectinload(Call.turns))).one()
        report.calls_scanned += 1
        call_ranges: list[tuple[float, float]] = []
        changed = False
        for turn in call.turns:
            report.turns_scanned += 1
            notes = session.scalars(select(Annotation).where(Annotation.turn_id == turn.id)
                                    .where(Annotation.field.in_(["transcript", "reply",
                                                                 "slots"]))).all()
            ranges = _redact_turn(turn, notes, policy, report, dry_run, stale)
            if ranges is None:
                continue
            changed = True
            call_ranges += [(a + turn.caller_start_s, b + turn.caller_start_s)
                            for a, b in ranges]
            if not dry_run and turn.caller_audio_sha256 and ranges:
                stale.add(turn.caller_audio_sha256)
                turn.caller_audio_sha256 = _silenced_copy(store, turn.caller_audio_sha256,
                                                          ranges)
        summary = _redact_summary(dict(call.summary or {}), policy)
        if summary != (call.summary or {}):
            changed = True
            report.summaries_redacted += 1
            if not dry_run:
                call.summary = summary
        if changed:
            report.calls_redacted += 1
        if changed and not dry_run and call.caller_audio_sha256 and call_ranges:
            stale.add(call.caller_audio_sha256)
            call.caller_audio_sha256 = _silenced_copy(store, call.caller_audio_sha256,
                                                      call_ranges)
        if dry_run:
            session.rollback()
    if not dry_run:
        _delete_unreferenced(store, stale)


def _redact_turn(turn: Turn, notes: list[Annotation], policy: RedactionPolicy,
                 report: RedactionReport, dry_run: bool,
                 stale: set[str]) -> list[tuple[float, float]] | None:
    """Redact one turn's row in place; the audio ranges to silence, or None if it was clean."""
    text = redact_text(turn.transcript or "", policy)
    said = redact_words(list(turn.words or []), policy)
    reply = redact_text(turn.reply or "", policy)
    slots, slot_counts = redact_slots(dict(turn.slots or {}), policy)
    note_changes = []
    for note in notes:
        new_value = _redact_value(note.value, note.field, policy)
        new_previous = _redact_value(note.previous, note.field, policy)
        if new_value != note.value or new_previous != note.previous:
            note_changes.append((note, new_value, new_previous))
    counts: dict[str, int] = {}
    for kind in set(text.counts) | set(said.counts):
        counts[kind] = max(text.counts.get(kind, 0), said.counts.get(kind, 0))
    for part in (reply.counts, slot_counts):
        for kind, n in part.items():
            counts[kind] = counts.get(kind, 0) + n
    if not counts and not note_changes:
        return None
    report.turns_redacted += 1
    report.add(counts)
    report.annotations_redacted += len(note_changes)
    duration = max(0.0, turn.caller_end_s - turn.caller_start_s)
    ranges = list(said.ranges)
    if sum(text.counts.values()) > sum(said.counts.values()):
        ranges = [(0.0, duration)]
        report.whole_turns_silenced += 1
    report.audio_seconds_silenced += silenced_seconds(ranges, duration)
    if reply.spans and turn.reply_audio_sha256:
        report.reply_audio_dropped += 1
    if dry_run:
        return ranges
    turn.transcript, turn.words, turn.slots = text.text, said.words, slots
    if reply.spans:
        turn.reply = reply.text
        if turn.reply_audio_sha256:
            stale.add(turn.reply_audio_sha256)
            turn.reply_audio_sha256 = None
    merged = dict(turn.redactions or {})
    for kind, n in counts.items():
        merged[kind] = merged.get(kind, 0) + n
    turn.redactions = merged
    for note, new_value, new_previous in note_changes:
        note.value, note.previous = new_value, new_previous
    return ranges


def _redact_summary(summary: dict[str, Any], policy: RedactionPolicy) -> dict[str, Any]:
    """The call summary: account numbers and slots by name, free text by the detector."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        kind = SLOT_KINDS.get(key)
        if kind in policy.kinds and isinstance(value, str) and value \
                and value not in (WITHHELD, policy.mark(kind)):
            out[key] = policy.mark(kind)
        elif key == "slots" and isinstance(value, dict):
            out[key] = redact_slots({str(k): str(v) for k, v in value.items()}, policy)[0]
        elif isinstance(value, str):
            out[key] = redact_text(value, policy).text
        else:
            out[key] = value
    return out


def _redact_value(value: Any, field_name: str, policy: RedactionPolicy) -> Any:
    if value is None:
        return None
    if field_name == "slots" and isinstance(value, dict):
        return redact_slots({str(k): str(v) for k, v in value.items()}, policy)[0]
    if isinstance(value, str):
        return redact_text(value, policy).text
    return value


def _silenced_copy(store: CallStore, digest: str, ranges: list[tuple[float, float]]) -> str:
    path = store.audio.path_for(digest)
    if not path.exists():
        return digest  # nothing stored to scrub (audio pruned earlier)
    samples, rate = store.audio.get(digest)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    return store.audio.put(silence(samples, rate, ranges), rate)


def _delete_unreferenced(store: CallStore, digests: set[str]) -> None:
    """Remove superseded audio: its speech held what was just redacted."""
    with Session(store.engine) as session:
        for digest in digests:
            used = session.scalar(select(func.count()).select_from(Turn).where(
                (Turn.caller_audio_sha256 == digest) | (Turn.reply_audio_sha256 == digest)))
            used = (used or 0) + (session.scalar(select(func.count()).select_from(Call).where(
                Call.caller_audio_sha256 == digest)) or 0)
            if not used:
                store.audio.path_for(digest).unlink(missing_ok=True)


@dataclass
class RedactedAudio:
    samples: Any  # float32 mono
    sample_rate: int
    ranges: list[tuple[float, float]]
    whole_turn: bool  # the words could not place what the text holds: all of it silenced


def redacted_audio(store: CallStore, view: TurnView, policy: RedactionPolicy
                   ) -> RedactedAudio | None:
    """The turn's caller audio with its personal data silenced; None if it is not stored."""
    if not view.caller_audio_sha256 or not store.audio.path_for(
            view.caller_audio_sha256).exists():
        return None
    samples, rate = store.audio.get(view.caller_audio_sha256)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    said = redact_words(view.words, policy)
    in_text = sum(redact_text(view.transcript, policy).counts.values())
    whole = in_text > sum(said.counts.values())
    ranges = [(0.0, len(samples) / rate)] if whole else said.ranges
    return RedactedAudio(silence(samples, rate, ranges) if ranges else samples, rate, ranges,
                         whole)
