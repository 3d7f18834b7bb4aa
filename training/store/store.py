"""Writing and reading calls. One call is one transaction: all of it is stored, or none.

A call must never be lost and storing it must never end the conversation, so
``record_call`` first writes the call to the local spool (``spool.py``), then
to the database, then removes it from the spool. When the database is away or
drops the connection mid-write, the call simply stays spooled and a background
thread stores it once the database is back (or the next process does, at
start-up). Writes are idempotent by call id, so a call replayed after a commit
whose answer was lost is still stored once.

The same code runs on SQLite (the default) and PostgreSQL. Where the two
disagree on what they accept (values longer than a column, NaN, time zones),
the store checks or converts first, so a call behaves the same on both.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Float, String, Table, create_engine, event, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, selectinload

from training.store.audio import AudioStore
from training.store.migrate import upgrade
from training.store.schema import Call, Turn
from training.store.spool import DatabaseUnavailable, Replayer, Spool, SpooledCall
from voicedesk.errors import VoicedeskError

log = logging.getLogger("voicedesk.store")

# Errors that mean "the database is not there right now", not "the database refuses this".
TRANSIENT = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)
CONNECT_TIMEOUT_S = 5  # a PostgreSQL host that does not answer must not hold a call for long
_MIGRATION_LOCK = 0x766F696365  # PostgreSQL advisory lock key: one migrating process at a time


@dataclass
class TurnRecord:
    index: int
    caller_start_s: float
    caller_end_s: float
    caller_audio_sha256: str
    transcript: str
    asr_confidence: float
    words: list[dict[str, Any]]
    intent: str
    intent_confidence: float
    reply: str
    reply_audio_sha256: str | None
    latency_ms: dict[str, float] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)
    reply_source: str = "flow"
    redactions: dict[str, int] = field(default_factory=dict)


class CallStore:
    """Calls and turns in the database at ``url``, audio under ``audio_root``.

    Calls waiting for the database are spooled in ``spool_dir`` (default: the
    ``spool`` folder beside ``audio_root``, i.e. in the store's home) and retried
    after ``retry_first_s``, backing off to ``retry_max_s`` while it stays away.
    """

    def __init__(self, url: str, audio_root: Path, *, spool_dir: Path | None = None,
                 retry_first_s: float = 1.0, retry_max_s: float = 30.0) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True,
                                                                           exist_ok=True)
        try:
            self.engine: Engine = create_engine(url, **_engine_options(url))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise VoicedeskError(f"database URL {url!r} cannot be used: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            _upgrade_once(self.engine)
        except SQLAlchemyError as exc:
            raise VoicedeskError(f"database {self.engine.url!r} is not reachable or not "
                                 f"writable: {_first_line(exc)}") from None
        self.audio = AudioStore(audio_root)
        self.spool = Spool(spool_dir or Path(audio_root).parent / "spool")
        self._replayer = Replayer(self.spool, self._store_spooled, first_delay_s=retry_first_s,
                                  max_delay_s=retry_max_s)
        waiting = len(self.spool)
        if waiting:
            log.warning("%d call(s) from an earlier run are waiting in %s; storing them in the "
                        "background", waiting, self.spool.folder)
            self._replayer.wake()

    def new_call_id(self) -> str:
        return str(uuid.uuid4())

    def record_call(self, call_id: str, *, channel: str, source: str, duration_s: float,
                    caller_audio_sha256: str | None, models: dict[str, Any],
                    turns: list[TurnRecord], started_at: datetime | None = None,
                    status: str = "completed", summary: dict[str, Any] | None = None) -> None:
        """Store the call and all its turns atomically, or keep it spooled until possible.

        Returns normally when the database is away: the call is safe on disk and
        is stored later. Raises ``VoicedeskError`` only for a call that no
        database would take (a value too long for its column, NaN where a number
        belongs, JSON that is not JSON) or when neither the database nor the
        spool folder can take it. A call id stored before is not stored again.
        """
        record = _call_record(call_id, channel=channel, source=source, duration_s=duration_s,
                              caller_audio_sha256=caller_audio_sha256, models=models,
                              turns=turns, started_at=started_at, status=status,
                              summary=summary or {})
        spool_error: OSError | None = None
        try:
            spooled: Path | None = self.spool.put(call_id, record)
        except OSError as exc:
            spooled = None
            log.error("cannot write call %s to the spool folder %s (%s); storing it without "
                      "a safety copy", call_id, self.spool.folder, exc)
            spool_error = exc
        if spooled is not None and self._replayer.database_down:
            # the replayer probes the database on its backoff; this call does not wait on it
            log.info("database still unavailable; call %s kept in %s", call_id, spooled)
            return
        with self._replayer.in_flight(call_id):
            try:
                self._write(call_id, record)
            except DatabaseUnavailable as exc:
                if spooled is None:
                    raise VoicedeskError(
                        f"call {call_id} could not be stored: the database {self.engine.url!r} "
                        f"is unavailable ({exc}) and the spool folder {self.spool.folder} is "
                        f"not writable ({spool_error}); free or fix that folder") from None
                self._replayer.mark_down(str(exc))
                log.warning("call %s kept in %s until the database is back", call_id, spooled)
                return
            except VoicedeskError as exc:
                if spooled is not None:
                    self.spool.reject(spooled, str(exc))
                raise
        if spooled is not None:
            self.spool.remove(call_id)
        self._replayer.mark_up()
        if len(self.spool):
            self._replayer.wake()  # the database is here: a good moment for earlier calls

    def retry_spooled(self) -> int:
        """Store spooled calls now, on this thread; returns how many still wait."""
        return self._replayer.drain()

    def get_call(self, call_id: str) -> Call | None:
        with Session(self.engine) as session:
            stmt = select(Call).where(Call.id == call_id).options(selectinload(Call.turns))
            call = session.scalars(stmt).first()
            if call is not None:
                session.expunge_all()
                if call.started_at.tzinfo is None:  # SQLite keeps no zone; the store writes UTC
                    call.started_at = call.started_at.replace(tzinfo=UTC)
            return call

    def count(self) -> tuple[int, int]:
        with Session(self.engine) as session:
            calls = session.scalar(select(func.count()).select_from(Call)) or 0
            turns = session.scalar(select(func.count()).select_from(Turn)) or 0
            return calls, turns

    def close(self) -> None:
        """Stop retrying (spooled calls stay on disk for the next start) and disconnect."""
        self._replayer.stop()
        if len(self.spool) and not self._replayer.database_down:
            self._replayer.drain()
        self.engine.dispose()

    # ---- writing one call ------------------------------------------------------------------
    def _store_spooled(self, call: SpooledCall) -> None:
        self._write(call.call_id, call.record)

    def _write(self, call_id: str, record: dict[str, Any]) -> bool:
        """One transaction; False when the call id is already stored (nothing written)."""
        try:
            try:
                with Session(self.engine) as session, session.begin():
                    if session.get(Call, call_id) is not None:
                        return False
                    session.add(_call_row(call_id, record))
                return True
            except IntegrityError as exc:
                if self._exists(call_id):  # stored by another writer at the same moment
                    return False
                raise VoicedeskError(f"call {call_id} was refused by the database "
                                     f"{self.engine.url!r}: {_first_line(exc)}") from None
        except TRANSIENT as exc:
            raise DatabaseUnavailable(_first_line(exc)) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise DatabaseUnavailable(_first_line(exc)) from exc
            raise VoicedeskError(f"call {call_id} was refused by the database "
                                 f"{self.engine.url!r}: {_first_line(exc)}") from None

    def _exists(self, call_id: str) -> bool:
        with Session(self.engine) as session:
            return session.get(Call, call_id) is not None


# ---- the call as plain data: what is spooled, checked the same way on every backend ----
def _call_record(call_id: str, *, channel: str, source: str, duration_s: float,
                 caller_audio_sha256: str | None, models: dict[str, Any],
                 turns: list[TurnRecord], started_at: datetime | None, status: str,
                 summary: dict[str, Any]) -> dict[str, Any]:
    # A naive time is local time, as Python reads it; SQLite keeps no zone, so store UTC.
    when = (started_at or datetime.now(UTC)).astimezone(UTC)
    call = {"started_at": when.isoformat(), "channel": channel, "source": source,
            "duration_s": duration_s, "caller_audio_sha256": caller_audio_sha256,
            "status": status, "models": _json_safe(models), "summary": _json_safe(summary)}
    _check_columns(Call.__table__, {"id": call_id, **call}, f"call {call_id}")
    rows = []
    for turn in turns:
        row = {k: _json_safe(v) if isinstance(v, dict | list) else v
               for k, v in vars(turn).items()}
        _check_columns(Turn.__table__, row, f"call {call_id} turn {turn.index}")
        rows.append(row)
    record = {"call": call, "turns": rows}
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise VoicedeskError(f"call {call_id} cannot be stored: {exc}; models, summary and the "
                             "turns' words, slots, latencies and redactions must be plain JSON "
                             "(dicts, lists, strings, numbers, booleans, None)") from None
    return record


def _call_row(call_id: str, record: dict[str, Any]) -> Call:
    values = dict(record["call"])
    values["started_at"] = datetime.fromisoformat(values["started_at"])
    call = Call(id=call_id, **values)
    call.turns = [Turn(**t) for t in record["turns"]]
    return call


def _json_safe(value: Any) -> Any:
    """NaN and infinity become None: PostgreSQL's JSON rejects them, SQLite's takes them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _check_columns(table: Table, values: dict[str, Any], where: str) -> None:
    """Refuse what one backend would store and the other refuse, before either sees it."""
    for column in table.columns:
        value = values.get(column.name)
        if isinstance(value, str):
            length = getattr(column.type, "length", None)
            if isinstance(column.type, String) and length and len(value) > length:
                raise VoicedeskError(f"{where}: {column.name} is {len(value)} characters long "
                                     f"({value[:40]!r}...); the store keeps at most {length}: "
                                     f"shorten it")
            if "\x00" in value:
                raise VoicedeskError(f"{where}: {column.name} contains a NUL character, which "
                                     "PostgreSQL cannot store; remove it")
        elif (isinstance(column.type, Float) and isinstance(value, float)
              and not math.isfinite(value)):
            raise VoicedeskError(f"{where}: {column.name} is {value}; expected a finite number "
                                 "(SQLite stores NaN as NULL, PostgreSQL keeps it): pass 0.0 "
                                 "or fix what produced it")


# ---- engine -------------------------------------------------------------------------------
def _engine_options(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return {}
    options: dict[str, Any] = {"pool_pre_ping": True}  # notice a restarted server at checkout
    if "connect_timeout" not in parsed.query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return options


_MIGRATING = threading.Lock()  # Alembic keeps its context in module globals: one at a time


def _upgrade_once(engine: Engine) -> None:
    """Migrate, one process and one thread at a time, so stores starting together all start.

    PostgreSQL serialises processes with an advisory lock; a SQLite file with an
    exclusive lock on its folder (not on the file: closing another descriptor of
    the database file would drop SQLite's own locks).
    """
    with _MIGRATING, contextlib.ExitStack() as held:
        if engine.dialect.name == "postgresql":
            lock = held.enter_context(engine.connect())
            lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
            held.callback(lock.commit)
            held.callback(lock.execute, text("SELECT pg_advisory_unlock(:key)"),
                          {"key": _MIGRATION_LOCK})
        elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "",
                                                                              ":memory:"):
            folder = os.open(Path(engine.url.database).expanduser().parent, os.O_RDONLY)
            held.callback(os.close, folder)
            fcntl.flock(folder, fcntl.LOCK_EX)
        upgrade(engine)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
