"""The call store behaves the same on SQLite and on a real PostgreSQL server, and loses no call.

Every behaviour test runs twice: on a SQLite file and on a fresh database of
the session's PostgreSQL server (``pg_server.py``; skipped with the reason
where the server cannot run). The resilience tests stop the real server or
terminate its backend in the middle of writes and check that every call ends
up stored exactly once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

from nlu.crm.demo import DemoCRM
from training.store import CallStore, TurnRecord
from training.store.migrate import alembic_config
from training.store.schema import Call
from training.store.store import _call_record
from voicedesk.errors import VoicedeskError

if TYPE_CHECKING:
    from pg_server import PostgresServer

pytest_plugins = ["pg_server"]

RATE = 8000


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'voicedesk.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[CallStore]:
    store = CallStore(database_url, tmp_path / "home" / "audio", retry_first_s=0.05,
                      retry_max_s=0.5)
    yield store
    store.close()


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def turn(index: int, **changes: object) -> TurnRecord:
    base = TurnRecord(index=index, caller_start_s=1.5 * index, caller_end_s=1.5 * index + 1.2,
                      caller_audio_sha256="a" * 64, transcript=f"my internet is down {index}",
                      asr_confidence=0.91, words=[{"word": "my", "start": 0.0, "end": 0.2,
                                                   "probability": 0.98}],
                      intent="report_outage", intent_confidence=0.87,
                      reply="Sorry to hear that; let me check.", reply_audio_sha256=None,
                      latency_ms={"asr_ms": 120.5, "voice_to_voice_ms": 640.0},
                      slots={"area": "Oxford", "pin": "[withheld]"}, reply_source="flow",
                      redactions={"card_number": 1})
    return dataclasses.replace(base, **changes)


def record(store: CallStore, call_id: str, turns: int | list[TurnRecord] = 2,
           **changes: object) -> None:
    """Record a plausible call; ``turns`` is a count of standard turns or the turns."""
    kwargs: dict[str, object] = {
        "channel": "file", "source": "calls/0042.wav", "duration_s": 12.5,
        "caller_audio_sha256": None, "models": {"asr": "whisper-base"},
        "turns": [turn(i) for i in range(turns)] if isinstance(turns, int) else turns,
        "status": "resolved",
        "summary": {"disposition": "resolved"}}
    kwargs.update(changes)
    store.record_call(call_id, **kwargs)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``condition()``; fail naming ``what`` if it is still false after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def stored_ids(store: CallStore) -> list[str]:
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(select(Call.id))]


# ---- schema ---------------------------------------------------------------------------------
def test_migrations_bring_an_empty_database_to_the_newest_schema(database_url: str,
                                                                   tmp_path: Path) -> None:
    CallStore(database_url, tmp_path / "audio").close()
    CallStore(database_url, tmp_path / "audio").close()  # a second start changes nothing
    engine = create_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    assert {"calls", "turns", "annotations", "datasets", "training_runs", "model_versions",
            "verification_reports"} <= tables
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert version == [head]


def test_stores_starting_together_on_an_empty_database_all_start(database_url: str,
                                                                  tmp_path: Path) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            CallStore(database_url, tmp_path / "audio").close()
        except BaseException as exc:  # reported below with the backend's message
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


# ---- one call ----------------------------------------------------------------------------
def test_a_call_with_its_turns_reads_back_as_written(store: CallStore) -> None:
    caller = store.audio.put(tone(2.0, 440.0), RATE)
    reply = store.audio.put(tone(1.0, 660.0), RATE)
    turns = [turn(0, caller_audio_sha256=caller, reply_audio_sha256=reply), turn(1)]
    call_id = store.new_call_id()
    store.record_call(call_id, channel="sip", source="+15551230001", duration_s=31.25,
                      caller_audio_sha256=caller, models={"asr": "whisper-base", "llm": "smol"},
                      turns=turns, status="escalated", summary={"disposition": "escalated"})

    call = store.get_call(call_id)

    assert call is not None
    assert (call.channel, call.source, call.duration_s, call.status) == (
        "sip", "+15551230001", 31.25, "escalated")
    assert call.caller_audio_sha256 == caller
    assert [t.index for t in call.turns] == [0, 1]
    first = call.turns[0]
    assert {f.name: getattr(first, f.name) for f in dataclasses.fields(TurnRecord)} == vars(
        turns[0])
    samples, rate = store.audio.get(first.reply_audio_sha256 or "")
    assert rate == RATE and len(samples) == RATE
    assert store.count() == (1, 2)
    assert len(store.spool) == 0


def test_json_columns_keep_nested_values_unicode_and_types(store: CallStore) -> None:
    models = {"asr": {"name": "whisper-base", "beam": 5, "int8": True, "lang": None},
              "voices": ["joe", "amy"], "temperature": 0.25}
    summary = {"disposition": "resolved", "text": "Client a payé 62,40 € — merci ☎",
               "tickets": [{"id": "TKT-000001", "fields": {"nested": [1, [2, 3]]}}]}
    words = [{"word": "café", "start": 0.0, "end": 0.31, "probability": 0.5},
             {"word": "日本", "start": 0.31, "end": 0.6, "probability": 1.0}]
    call_id = store.new_call_id()
    record(store, call_id, models=models, summary=summary,
           turns=[turn(0, words=words, slots={"address": "14 Park Lane, Oxford"},
                       latency_ms={"asr_ms": 0.0, "tts_ms": 12.75})])

    call = store.get_call(call_id)

    assert call is not None
    assert call.models == models and call.summary == summary
    assert call.turns[0].words == words
    assert call.turns[0].slots == {"address": "14 Park Lane, Oxford"}
    assert call.turns[0].latency_ms == {"asr_ms": 0.0, "tts_ms": 12.75}


def test_nan_and_infinity_inside_json_are_stored_as_null_on_both_backends(
        store: CallStore) -> None:
    call_id = store.new_call_id()
    record(store, call_id, models={"score": float("nan")},
           turns=[turn(0, latency_ms={"asr_ms": float("inf"), "nlu_ms": 3.5})])

    call = store.get_call(call_id)

    assert call is not None
    assert call.models == {"score": None}
    assert call.turns[0].latency_ms == {"asr_ms": None, "nlu_ms": 3.5}


def test_started_at_keeps_its_instant_and_reads_back_in_utc(store: CallStore) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    started = dt.datetime(2026, 11, 28, 9, 30, 15, 250000, tzinfo=paris)
    call_id = store.new_call_id()
    record(store, call_id, started_at=started)

    call = store.get_call(call_id)

    assert call is not None
    assert call.started_at == started
    assert call.started_at.utcoffset() == dt.timedelta(0)


def test_a_call_id_recorded_twice_is_stored_once(store: CallStore) -> None:
    call_id = store.new_call_id()
    record(store, call_id, turns=2)
    record(store, call_id, turns=3, status="abandoned")

    assert store.count() == (1, 2)
    call = store.get_call(call_id)
    assert call is not None and call.status == "resolved"


# ---- refused input: nothing half-written, the same answer on both backends -----------------
def test_a_call_that_fails_mid_write_leaves_nothing(store: CallStore) -> None:
    call_id = store.new_call_id()
    with pytest.raises(VoicedeskError, match=f"call {call_id} was refused by the database"):
        # the call row is inserted, then the second turn breaks the (call_id, index) key
        record(store, call_id, turns=[turn(0), turn(1), turn(1)])

    assert store.count() == (0, 0)
    assert store.get_call(call_id) is None
    assert len(store.spool) == 0
    rejected = store.spool.rejected / f"{call_id}.json"
    assert rejected.exists(), "the refused call is kept aside, not deleted"
    assert "refused" in rejected.with_suffix(".reason.txt").read_text()


def test_a_value_longer_than_its_column_is_refused_before_writing(store: CallStore) -> None:
    call_id = store.new_call_id()
    with pytest.raises(VoicedeskError, match="turn 1: intent is 65 characters long"):
        record(store, call_id, turns=[turn(0), turn(1, intent="x" * 65)])
    with pytest.raises(VoicedeskError, match="id is 37 characters long"):
        record(store, "c" * 37)

    assert store.count() == (0, 0)
    assert len(store.spool) == 0


def test_nan_in_a_number_column_is_refused_with_the_field_named(store: CallStore) -> None:
    with pytest.raises(VoicedeskError, match="turn 0: asr_confidence is nan; expected a finite"):
        record(store, store.new_call_id(), turns=[turn(0, asr_confidence=float("nan"))])
    assert store.count() == (0, 0)


def test_a_models_value_that_is_not_json_is_refused(store: CallStore) -> None:
    with pytest.raises(VoicedeskError, match="must be plain JSON"):
        record(store, store.new_call_id(), models={"path": Path("/models/asr")})
    assert store.count() == (0, 0)


# ---- many writers --------------------------------------------------------------------------
def test_concurrent_writers_store_every_call_exactly_once(store: CallStore) -> None:
    shared = store.new_call_id()  # every thread also records this one
    ids = [[store.new_call_id() for _ in range(8)] for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(ids))

    def writer(mine: list[str]) -> None:
        barrier.wait()
        try:
            for call_id in [mine[0], shared, *mine[1:]]:
                record(store, call_id, turns=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(mine,)) for mine in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    wait_until(lambda: store.retry_spooled() == 0, what="spooled calls to be stored")
    expected = sorted([shared, *(i for mine in ids for i in mine)])
    assert sorted(stored_ids(store)) == expected
    assert store.count() == (len(expected), 3 * len(expected))


# ---- the demo CRM in the same database ----------------------------------------------------
def test_the_demo_crm_is_seeded_and_queried_beside_the_call_store(store: CallStore) -> None:
    crm = DemoCRM(store.url)
    try:
        crm.seed_if_empty()
        crm.seed_if_empty()  # a second start does not seed twice
        sarah = crm.customer("40011234")
        assert sarah is not None and sarah.name == "Sarah Mitchell"
        assert sarah.date_of_birth == dt.date(1984, 3, 9)
        assert sarah.data_allowance_gb is None and sarah.balance_due == pytest.approx(62.40)
        by_phone = crm.customer_by_phone("(555) 123-0002")
        assert by_phone is not None and by_phone.account_number == "40015678"
        assert [o.service for o in crm.outages_for("14 Park Lane, Oxford")] == ["broadband"]
        assert crm.outages_for("Kingsbridge") == []
        assert crm.outages_for("42 Oxford Road, Kingsbridge") == []  # a street, not the town

        created = crm.create_ticket("outage", "high", "40011234", {"area": "Oxford"})
        updated = crm.update_ticket(created.id, status="escalated", fields={"note": "é ☎"})
        again = crm.ticket(created.id)
        assert again == updated
        assert again.fields == {"area": "Oxford", "note": "é ☎"}
        assert again.created_at is not None and again.created_at.utcoffset() == dt.timedelta(0)
        assert [t.id for t in crm.tickets_for("40011234")] == [created.id]
        moved = crm.update_customer("40011234", area="Brightwater", roaming_enabled=True)
        assert crm.customer("40011234") == moved

        record(store, store.new_call_id())
        assert store.count() == (1, 2)
    finally:
        crm.engine.dispose()


# ---- the database goes away: the call goes on, nothing is lost ----------------------------
def test_calls_survive_the_server_being_killed_and_restarted_mid_write(
        pg_server: PostgresServer, pg_url: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="voicedesk.store")
    store = CallStore(pg_url, tmp_path / "audio", retry_first_s=0.05, retry_max_s=0.5)
    ids = [store.new_call_id() for _ in range(60)]
    written = threading.Event()
    slowest: list[float] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n, call_id in enumerate(ids):
                began = time.monotonic()
                record(store, call_id, turns=2)
                slowest.append(time.monotonic() - began)
                if n == 15:
                    written.set()
                time.sleep(0.02)
        except BaseException as exc:
            errors.append(exc)
            written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert written.wait(30)
        pg_server.stop(mode="immediate")  # like a crash: no goodbye to the clients
        time.sleep(0.5)  # calls keep coming while the server is gone
    finally:
        pg_server.start()
    thread.join(60)

    assert errors == [], "record_call raised while the database was away"
    assert max(slowest) < 3.0, "a call waited on the missing database"
    wait_until(lambda: len(store.spool) == 0, what="spooled calls to be stored after restart")
    assert "database unavailable" in caplog.text  # the outage was real and was logged
    assert sorted(stored_ids(store)) == sorted(ids)
    assert store.count() == (60, 120)
    store.close()


def test_a_backend_terminated_in_the_middle_of_a_call_loses_nothing(
        pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    import psycopg

    store = CallStore(pg_url, tmp_path / "audio", retry_first_s=0.05, retry_max_s=0.5)
    database = pg_url.rsplit("/", 1)[1]
    call_id = store.new_call_id()
    with psycopg.connect(pg_server.conninfo(database)) as admin:
        # hold the turns table: the call's transaction inserts its call row, then waits
        admin.execute("LOCK TABLE turns IN ACCESS EXCLUSIVE MODE")
        writer = threading.Thread(target=record, args=(store, call_id), kwargs={"turns": 2})
        writer.start()
        waiting: list[int] = []

        def writer_blocked_on_turns() -> bool:
            with psycopg.connect(pg_server.conninfo(), autocommit=True) as probe:
                rows = probe.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                    "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO turns%%'",
                    (database,)).fetchall()
            waiting[:] = [r[0] for r in rows]
            return bool(waiting)

        wait_until(writer_blocked_on_turns, "the call's transaction to reach the turns")
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
        writer.join(30)
        assert not writer.is_alive(), "record_call did not return after its backend died"
        # the lock still holds any retry back, so this sees only what was committed
        stored = admin.execute("SELECT count(*) FROM calls").fetchone()
        assert stored == (0,), "the half-written call was rolled back"
        admin.rollback()

    wait_until(lambda: store.count() == (1, 2), what="the spooled call to be stored")
    assert stored_ids(store) == [call_id]
    assert len(store.spool) == 0
    store.close()


def test_calls_spooled_by_an_earlier_process_are_stored_at_start_up(
        pg_server: PostgresServer, pg_url: str, tmp_path: Path) -> None:
    first = CallStore(pg_url, tmp_path / "audio")
    ids = [first.new_call_id() for _ in range(5)]
    pg_server.stop()
    try:
        for call_id in ids:
            record(first, call_id)  # returns: the calls are safe in the spool
        first.close()
        assert len(first.spool) == 5
    finally:
        pg_server.start()

    second = CallStore(pg_url, tmp_path / "audio")

    wait_until(lambda: len(second.spool) == 0, what="start-up to store the spooled calls")
    assert sorted(stored_ids(second)) == sorted(ids)
    assert second.count() == (5, 10)
    second.close()


def test_a_spooled_call_whose_commit_did_arrive_is_not_stored_twice(store: CallStore) -> None:
    # The connection died after COMMIT reached the server: the call is stored and spooled.
    call_id = store.new_call_id()
    record(store, call_id, turns=2)
    store.spool.put(call_id, _call_record(
        call_id, channel="file", source="x.wav", duration_s=1.0, caller_audio_sha256=None,
        models={}, turns=[turn(0), turn(1)], started_at=None, status="resolved", summary={}))

    assert store.retry_spooled() == 0
    assert store.count() == (1, 2)
    assert len(store.spool) == 0


def test_a_call_the_database_refuses_on_replay_is_moved_aside_not_retried(
        store: CallStore) -> None:
    call_id = store.new_call_id()
    store.spool.put(call_id, _call_record(
        call_id, channel="file", source="x.wav", duration_s=1.0, caller_audio_sha256=None,
        models={}, turns=[turn(0), turn(0)], started_at=None, status="resolved", summary={}))

    assert store.retry_spooled() == 0
    assert store.count() == (0, 0)
    reason = (store.spool.rejected / f"{call_id}.reason.txt").read_text()
    assert f"call {call_id} was refused by the database" in reason


# ---- SQLite: a database locked by another writer ---------------------------------------------
def locked_sqlite(path: Path) -> sqlite3.Connection:
    """Another process's long write: holds SQLite's write lock until rolled back."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_call_meeting_a_locked_sqlite_database_is_spooled_then_stored(tmp_path: Path) -> None:
    db = tmp_path / "home" / "voicedesk.db"
    store = CallStore(f"sqlite:///{db}?timeout=0.2", tmp_path / "home" / "audio",
                      retry_first_s=0.05, retry_max_s=0.2)
    holder = locked_sqlite(db)
    call_id = store.new_call_id()
    try:
        record(store, call_id)  # returns: kept in the spool while the lock holds
        assert len(store.spool) == 1
    finally:
        holder.rollback()
        holder.close()

    wait_until(lambda: len(store.spool) == 0, what="the spooled call to be stored")
    assert stored_ids(store) == [call_id]
    store.close()


def test_without_a_writable_spool_a_call_is_still_stored_directly(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    store = CallStore(f"sqlite:///{tmp_path / 'voicedesk.db'}", tmp_path / "audio",
                      spool_dir=tmp_path / "not-a-folder" / "spool")
    call_id = store.new_call_id()
    record(store, call_id)
    assert stored_ids(store) == [call_id]
    store.close()


def test_with_neither_database_nor_spool_the_error_names_both(tmp_path: Path) -> None:
    db = tmp_path / "voicedesk.db"
    (tmp_path / "not-a-folder").write_text("")
    store = CallStore(f"sqlite:///{db}?timeout=0.2", tmp_path / "audio",
                      spool_dir=tmp_path / "not-a-folder" / "spool")
    holder = locked_sqlite(db)
    try:
        with pytest.raises(VoicedeskError, match="is unavailable .* spool folder .* is not "
                                                 "writable"):
            record(store, store.new_call_id())
    finally:
        holder.rollback()
        holder.close()
        store.close()
