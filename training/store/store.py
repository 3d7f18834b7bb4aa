"""Writing and reading calls. One call is one transaction: all of it is stored, or none."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from training.store.audio import AudioStore
from training.store.migrate import upgrade
from training.store.schema import Call, Turn
from voicedesk.errors import VoicedeskError


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
    def __init__(self, url: str, audio_root: Path) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True,
                                                                           exist_ok=True)
        try:
            self.engine: Engine = create_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise VoicedeskError(f"database URL {url!r} cannot be used: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise VoicedeskError(f"database {self.engine.url!r} is not reachable or not "
                                 f"writable: {str(exc).splitlines()[0]}") from None
        self.audio = AudioStore(audio_root)

    def new_call_id(self) -> str:
        return str(uuid.uuid4())

    def record_call(self, call_id: str, *, channel: str, source: str, duration_s: float,
                    caller_audio_sha256: str | None, models: dict[str, Any],
                    turns: list[TurnRecord], started_at: datetime | None = None,
                    status: str = "completed", summary: dict[str, Any] | None = None) -> None:
        """Store the call and all its turns atomically."""
        with Session(self.engine) as session, session.begin():
            call = Call(id=call_id, started_at=started_at or datetime.now(UTC), channel=channel,
                        source=source, duration_s=duration_s,
                        caller_audio_sha256=caller_audio_sha256, status=status, models=models,
                        summary=summary or {})
            call.turns = [Turn(**vars(t)) for t in turns]
            session.add(call)

    def get_call(self, call_id: str) -> Call | None:
        with Session(self.engine) as session:
            stmt = select(Call).where(Call.id == call_id).options(selectinload(Call.turns))
            call = session.scalars(stmt).first()
            if call is not None:
                session.expunge_all()
            return call

    def count(self) -> tuple[int, int]:
        with Session(self.engine) as session:
            calls = session.scalar(select(func.count()).select_from(Call)) or 0
            turns = session.scalar(select(func.count()).select_from(Turn)) or 0
            return calls, turns

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
