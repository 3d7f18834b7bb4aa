"""Stored calls as training data: card numbers kept out, redaction, cleaning, annotation, review.

Turns are real: espeak-ng speech transcribed by the assistant's Whisper (see
``data_calls``), written to a fresh store the way a call writer does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from nlu.numbers import spoken_digits_to_text
from tests.conftest import run_cli
from training.data.annotate import auto_label, model_name, record_review, review_queue
from training.data.clean import CleaningOptions, clean
from training.data.labels import views
from training.data.labelstudio import label_config, read_tasks, task, write_tasks
from training.data.pci import scrub_turn
from training.data.pii import RedactionPolicy
from training.data.redact import redact_store
from training.data.review_files import (
    ImportReport,
    apply_rows,
    export_row,
    read_jsonl_rows,
    write_jsonl,
)
from training.store import CallStore
from training.store.schema import Annotation, Call, Turn

pytest_plugins = ["data_calls"]
RATE = 16_000

VISA = "4539148803436467"
INTENTS = {"pay_bill", "check_balance", "billing_dispute", "slow_internet", "roaming",
           "speak_to_agent", "out_of_scope", "update_contact_details"}


@pytest.fixture
def store(config) -> Iterator[CallStore]:
    store = CallStore(config.database_url, config.audio_dir)
    yield store
    store.close()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _said(store: CallStore) -> str:
    """All words the store keeps of what was said: transcripts, word lists, replies, slots,
    call summaries and annotation values (not times, ids or hashes)."""
    with Session(store.engine) as session:
        parts = []
        for t in session.scalars(select(Turn)).all():
            parts += [t.transcript, " ".join(w["word"] for w in t.words), t.reply,
                      json.dumps(t.slots)]
        parts += [json.dumps(c.summary) for c in session.scalars(select(Call)).all()]
        parts += [json.dumps([n.value, n.previous])
                  for n in session.scalars(select(Annotation)).all()]
    return "\n".join(parts)


def _digits(text: str) -> str:
    """Digits however Whisper wrote them: "0770-0900123" or "zero seven seven zero ..."."""
    return re.sub(r"\D", "", spoken_digits_to_text(text))


def _card_digits_heard(text: str) -> bool:
    return len(_digits(text)) >= 4


# -- PCI: the card number never reaches the store ------------------------------------------

def test_pci_scrub_silences_the_spoken_card_and_leaves_the_rest(spoken: dict, assistant) -> None:
    turn = spoken["card"]
    assert VISA in _digits(turn.text)  # Whisper heard the card
    scrubbed = scrub_turn(turn.text, turn.words, f"Charging card {VISA} now.", turn.samples,
                          RATE)
    assert scrubbed.counts == {"card_number": 2}  # once said, once in the reply
    assert VISA not in scrubbed.transcript and VISA not in scrubbed.reply
    assert "[CARD_NUMBER]" in [w["word"] for w in scrubbed.words]
    assert not scrubbed.whole_turn_silenced and len(scrubbed.ranges) == 1
    start, end = scrubbed.ranges[0]
    a, b = int(start * RATE), min(len(turn.samples), int(end * RATE))
    assert _rms(turn.samples[a:b]) > 0.01  # speech was there...
    assert _rms(scrubbed.samples[a:b]) < 1e-6  # ...and is gone
    assert np.array_equal(scrubbed.samples[:a], turn.samples[:a])
    assert np.array_equal(scrubbed.samples[b:], turn.samples[b:])
    # Whisper listening to the scrubbed audio hears the request but no card digits.
    heard = assistant.transcriber.transcribe(scrubbed.samples).text
    assert "bill" in heard.lower() and not _card_digits_heard(heard)


# -- redaction of the store -------------------------------------------------------------------

def test_redact_store_scrubs_text_words_audio_and_reports_counts_only(
        add_call, store: CallStore, spoken: dict) -> None:
    call_id = add_call(store, [spoken["phone"], spoken["balance"], spoken["account"]],
                       summary={"disposition": "resolved", "account_number": "40011234",
                                "slots": {"phone_number": "07700900123", "plan_name": "Basic"}})
    before = store.get_call(call_id)
    old_turn_audio = before.turns[0].caller_audio_sha256
    old_call_audio = before.caller_audio_sha256
    report = redact_store(store, RedactionPolicy(), show_progress=False)
    result = report.to_json()
    assert result["counts"] == {"account_number": 1, "phone_number": 1}
    assert result["turns_redacted"] == 2 and result["calls_redacted"] == 1
    assert result["audio_seconds_silenced"] > 1.0
    assert all(isinstance(n, int) for n in result["counts"].values())

    after = store.get_call(call_id)
    assert _digits(_said(store)) == ""  # not a digit of a phone or account number left
    assert after.turns[0].redactions == {"phone_number": 1}
    assert after.summary == {"disposition": "resolved", "account_number": "[ACCOUNT_NUMBER]",
                             "slots": {"phone_number": "[PHONE_NUMBER]", "plan_name": "Basic"}}
    assert after.turns[1].transcript == before.turns[1].transcript  # no PII, untouched
    # The phone number's audio is silence in the turn and in the whole-call recording.
    placeholder = next(w for w in after.turns[0].words if w["word"] == "[PHONE_NUMBER]")
    samples, rate = store.audio.get(after.turns[0].caller_audio_sha256)
    a, b = int(placeholder["start"] * rate), int(placeholder["end"] * rate)
    assert _rms(samples[a:b]) < 1e-6 < _rms(samples[:int(0.8 * rate)])
    whole, _ = store.audio.get(after.caller_audio_sha256)
    offset = int(after.turns[0].caller_start_s * rate)
    assert _rms(whole[offset + a:offset + b]) < 1e-6
    # The unredacted audio files are gone from disk.
    assert not store.audio.path_for(old_turn_audio).exists()
    assert not store.audio.path_for(old_call_audio).exists()


def test_interrupted_redaction_resumes_where_it_stopped(
        add_call, store: CallStore, spoken: dict) -> None:
    for variant in range(3):
        add_call(store, [spoken["phone"], spoken["slow"]], variant=variant)

    def stop_after_first(n: int) -> None:
        if n == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        redact_store(store, RedactionPolicy(), show_progress=False, on_call=stop_after_first)
    again = redact_store(store, RedactionPolicy(), show_progress=False)
    assert again.calls_scanned == 3 and again.calls_redacted == 2
    assert again.counts == {"phone_number": 2}
    assert _digits(_said(store)) == ""
    assert redact_store(store, RedactionPolicy(), show_progress=False).calls_redacted == 0


def test_redact_cli_dry_run_changes_nothing_and_shows_progress(
        add_call, config, home: Path, store, spoken) -> None:
    add_call(store, [spoken["phone"]])
    stored_before = _digits(_said(store))
    assert len(stored_before) >= 10
    dry = run_cli(["data", "redact", "--dry-run"], home)
    assert dry.returncode == 0, dry.stderr
    assert "would redact: phone_number 1" in dry.stdout
    assert _digits(_said(store)) == stored_before
    assert "redacting: 1/1 calls" in dry.stderr and "ETA" in dry.stderr
    real = run_cli(["data", "redact", "--json"], home)
    assert json.loads(real.stdout)["counts"] == {"phone_number": 1}
    assert _digits(_said(store)) == ""


# -- cleaning --------------------------------------------------------------------------------

def test_cleaning_drops_empty_garbled_duplicate_low_confidence_and_long_turns(
        add_call, store: CallStore, spoken: dict) -> None:
    good, other = spoken["balance"], spoken["slow"]
    empty = replace(good, text="  ...  ", samples=good.samples[:1600], words=[], confidence=0.0)
    garbled = replace(other, text="the the the the the the the the",
                      samples=other.samples * 0.5, confidence=0.9)
    unsure = replace(good, samples=good.samples * 0.9, confidence=0.1)
    long = replace(good, text=" ".join(f"part{i}" for i in range(40)),
                   samples=good.samples * 0.8, confidence=0.9)
    add_call(store, [good, empty, garbled, good, unsure, long, other])
    with Session(store.engine) as session:
        turns = views(session)
    report = clean(turns, CleaningOptions(min_asr_confidence=0.4, max_words=30))
    assert [v.transcript for v in report.kept] == [good.text, other.text]
    assert report.counts == {"empty": 1, "garbled": 1, "duplicate": 1, "low_confidence": 1,
                             "too_short": 0, "too_long": 1}
    assert clean(turns, CleaningOptions(min_words=7)).counts["too_short"] >= 1


# -- annotation and review -------------------------------------------------------------------

def _labelled_store(add_call, store: CallStore, spoken: dict) -> list[str]:
    return [add_call(store, [spoken["balance"], spoken["dispute"]], variant=1),
            add_call(store, [spoken["slow"], spoken["roaming"], spoken["agent"]], variant=2)]


def test_auto_labels_carry_model_confidence_and_the_queue_puts_doubt_first(
        add_call, store: CallStore, spoken, assistant) -> None:
    _labelled_store(add_call, store, spoken)
    author = model_name(assistant)
    report = auto_label(store, assistant.recognizer.understand, author, show_progress=False)
    assert report.labelled == 5
    with Session(store.engine) as session:
        rows = session.scalars(select(Annotation)).all()
    assert {r.source for r in rows} == {"model"} and {r.author for r in rows} == {author}
    assert all(0.0 < r.confidence <= 1.0 for r in rows)
    labels = {v.transcript: v.intent for v in views(Session(store.engine))}
    assert labels[spoken["balance"].text] == "check_balance"
    queue = review_queue(store)
    confidences = [v.confidence for v in queue]
    assert len(queue) == 5 and confidences == sorted(confidences)
    assert {v.label_source for v in queue} == {"model"}


def test_interrupted_auto_labelling_resumes_without_labelling_twice(
        add_call, store: CallStore, spoken, assistant) -> None:
    _labelled_store(add_call, store, spoken)
    calls = []

    def understand(text: str):
        calls.append(text)
        return assistant.recognizer.understand(text)

    def stop(n: int) -> None:
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        auto_label(store, understand, "intent-model", show_progress=False, on_turn=stop)
    report = auto_label(store, understand, "intent-model", show_progress=False)
    assert (report.skipped_done, report.labelled) == (2, 3)
    assert len(calls) == 5 and len(set(calls)) == 5
    with Session(store.engine) as session:
        assert len(session.scalars(select(Annotation)).all()) == 5


def test_a_correction_is_a_new_row_with_the_previous_value_and_the_reviewer(
        add_call, store: CallStore, spoken) -> None:
    add_call(store, [spoken["dispute"]], intents=["check_balance"])
    with Session(store.engine) as session, session.begin():
        view = views(session)[0]
        record_review(session, view, "intent", "billing_dispute", "ana@example.com")
        assert record_review(session, view, "intent", "billing_dispute",
                             "ana@example.com") is None  # the same review twice adds nothing
    with Session(store.engine) as session:
        rows = session.scalars(select(Annotation)).all()
        view = views(session)[0]
        turn = session.scalars(select(Turn)).one()
    assert len(rows) == 1
    assert (rows[0].field, rows[0].value, rows[0].previous, rows[0].source, rows[0].author) == (
        "intent", "billing_dispute", "check_balance", "review", "ana@example.com")
    assert turn.intent == "check_balance"  # the call's own record is never rewritten
    assert view.intent == "billing_dispute" and view.intent_reviewed
    assert review_queue(store) == []


def test_jsonl_review_round_trip_is_redacted_and_recorded(
        add_call, store: CallStore, spoken, tmp_path: Path) -> None:
    add_call(store, [spoken["account"], spoken["balance"]], intents=["out_of_scope"] * 2)
    path = tmp_path / "queue.jsonl"
    policy = RedactionPolicy()
    write_jsonl(path, (export_row(v, policy) for v in review_queue(store)))
    exported = [json.loads(line) for line in path.read_text().splitlines()]
    assert _digits(exported[0]["text"] + exported[0]["transcript"]) == ""
    assert "[ACCOUNT_NUMBER]" in exported[0]["text"]
    exported[0]["intent"] = "check_balance"
    exported[1]["intent"] = "check_balance"
    exported[1]["transcript"] = "I want to check my balance, please."
    path.write_text("".join(json.dumps(r) + "\n" for r in exported))
    rows, errors = read_jsonl_rows(path)
    report = apply_rows(store, rows, INTENTS, policy, "ana", ImportReport(errors=errors))
    assert (report.reviewed_turns, report.annotations, report.errors) == (2, 3, [])
    with Session(store.engine) as session:
        current = views(session)
        notes = session.scalars(select(Annotation).order_by(Annotation.id)).all()
    assert [v.intent for v in current] == ["check_balance", "check_balance"]
    assert current[1].transcript == "I want to check my balance, please."
    assert {(n.field, n.author, n.source) for n in notes} == {
        ("intent", "ana", "import"), ("transcript", "ana", "import")}
    # The same file again changes nothing.
    again = apply_rows(store, read_jsonl_rows(path)[0], INTENTS, policy, "ana", ImportReport())
    assert again.annotations == 0


def test_malformed_import_rows_are_reported_by_line_and_the_rest_imported(
        add_call, store: CallStore, spoken, tmp_path: Path, home: Path) -> None:
    add_call(store, [spoken["balance"], spoken["slow"], spoken["roaming"]])
    with Session(store.engine) as session:
        ids = [v.turn_id for v in views(session)]
    lines = [
        json.dumps({"turn_id": ids[0], "intent": "check_balance", "reviewer": "ana"}),
        "{not json",
        json.dumps({"turn_id": ids[1], "intent": "no_such_intent", "reviewer": "ana"}),
        json.dumps({"turn_id": 999999, "intent": "roaming", "reviewer": "ana"}),
        "",
        json.dumps(["a", "list"]),
        json.dumps({"turn_id": ids[2], "intent": "roaming"}),  # reviewer from --reviewer
    ]
    path = tmp_path / "reviewed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_cli(["data", "review-import", str(path), "--reviewer", "ben"], home)
    assert result.returncode == 1
    for line, words in ((2, "not valid JSON"), (3, "unknown intent 'no_such_intent'"),
                        (4, "turn 999999 is not in the store"), (6, "expected a JSON object")):
        assert f"{path}:{line}: {words}" in result.stderr
    assert "imported 2 reviewed turn(s)" in result.stdout
    with Session(store.engine) as session:
        reviewed = {v.turn_id: (v.intent, v.reviewers.get("intent")) for v in views(session)
                    if v.intent_reviewed}
    assert reviewed == {ids[0]: ("check_balance", "ana"), ids[2]: ("roaming", "ben")}


def test_label_studio_round_trip(
        add_call, store: CallStore, spoken, tmp_path: Path, home: Path) -> None:
    add_call(store, [spoken["phone"], spoken["agent"]], intents=["out_of_scope", "goodbye"])
    out = tmp_path / "tasks.json"
    exported = run_cli(["data", "review-export", "--format", "labelstudio", "--out", str(out),
                        "--audio"], home)
    assert exported.returncode == 0, exported.stderr
    tasks = json.loads(out.read_text())
    assert len(tasks) == 2 and _digits(tasks[0]["data"]["text"]) == ""
    first = tasks[0]
    assert first["predictions"][0]["result"][0]["type"] == "choices"
    assert (out.parent / first["data"]["audio"]).is_file()
    xml = out.with_name("tasks.label_config.xml").read_text()
    assert '<Choices name="intent" toName="text"' in xml and "<TextArea" in xml
    assert '<Choice value="speak_to_agent"/>' in xml
    # What Label Studio exports after two people worked on the tasks (one task skipped).
    tasks[0]["annotations"] = [{
        "id": 7, "completed_by": {"id": 3, "email": "cara@example.com"},
        "was_cancelled": False, "updated_at": "2026-11-28T10:00:00Z",
        "result": [{"from_name": "intent", "to_name": "text", "type": "choices",
                    "value": {"choices": ["update_contact_details"]}},
                   {"from_name": "transcript", "to_name": "text", "type": "textarea",
                    "value": {"text": ["My phone number is 07700 900123."]}}]}]
    tasks[1]["annotations"] = [{"id": 8, "completed_by": 4, "was_cancelled": False,
                                "result": [{"from_name": "intent", "type": "choices",
                                            "value": {"choices": ["speak_to_agent"]}}]}]
    done = tmp_path / "export.json"
    done.write_text(json.dumps(tasks, indent=2))
    imported = run_cli(["data", "review-import", str(done), "--json"], home)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["reviewed_turns"] == 2
    with Session(store.engine) as session:
        current = views(session)
    assert [(v.intent, v.reviewers["intent"]) for v in current] == [
        ("update_contact_details", "cara@example.com"), ("speak_to_agent", "labelstudio:4")]
    # A reviewer's typed transcript is redacted before it is stored.
    assert current[0].transcript == "My phone number is [PHONE_NUMBER]."


def test_label_studio_tasks_format_and_broken_tasks_by_line(
        add_call, store: CallStore, spoken, tmp_path: Path) -> None:
    add_call(store, [spoken["balance"]], intents=["check_balance"])
    with Session(store.engine) as session:
        view = views(session)[0]
    one = task(view, RedactionPolicy())
    assert one["data"]["turn_id"] == view.turn_id
    assert one["predictions"][0]["result"][0]["value"] == {"choices": ["check_balance"]}
    assert "<Audio" in label_config(["a"], audio=True)
    path = tmp_path / "tasks.json"
    good = dict(one, annotations=[{"result": [{"from_name": "intent",
                                               "value": {"choices": ["check_balance"]}}]}])
    bad = dict(one, annotations=[{"result": [{"from_name": "intent",
                                              "value": {"choices": ["a", "b"]}}]}])
    write_tasks(path, [good, bad, {"no": "data"}])
    rows, errors = read_tasks(path)
    assert [r.line for r in rows] == [2]
    assert [line for line, _ in errors] == [3, 4]
    assert "exactly one choice" in errors[0][1]
    broken = tmp_path / "broken.json"
    broken.write_text(path.read_text().replace('"data"', '"data" "oops"', 1))
    rows, errors = read_tasks(broken)
    assert rows == [] and errors[0][0] == 2 and "not valid JSON" in errors[0][1]



def test_stats_and_clean_commands_report_the_store(add_call, store: CallStore, spoken,
                                                   home: Path) -> None:
    add_call(store, [spoken["balance"], spoken["balance"], spoken["slow"]],
             intents=["check_balance", "check_balance", "slow_internet"])
    with Session(store.engine) as session, session.begin():
        record_review(session, views(session)[2], "intent", "slow_internet", "ana")
    stats = run_cli(["data", "stats", "--json"], home)
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert (data["calls"], data["turns"], data["reviewed_turns"]) == (1, 3, 1)
    assert data["annotations"] == {"review": 1}
    assert data["intents"] == {"check_balance": 2, "slow_internet": 1}
    cleaned = run_cli(["data", "clean", "--list"], home)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "2 of 3 turns kept, 1 left out" in cleaned.stdout
    with Session(store.engine) as session:
        second = views(session)[1].turn_id
    assert f"turn {second}: duplicate" in cleaned.stdout
    strict = run_cli(["data", "clean", "--json", "--min-confidence", "0.99"], home)
    reasons = json.loads(strict.stdout)["reasons"]
    assert reasons["low_confidence"] == 3 and reasons["duplicate"] == 0  # first rule failed
