"""Tables of the call store (SQLAlchemy 2). Changes go through an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(32))  # file, sip, audiosocket, websocket, mic
    source: Mapped[str] = mapped_column(Text, default="")  # file path, caller id, ...
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    caller_audio_sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="completed")
    models: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # for agents, analysts
    turns: Mapped[list[Turn]] = relationship(back_populates="call", order_by="Turn.index",
                                             cascade="all, delete-orphan")


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("call_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    caller_start_s: Mapped[float] = mapped_column(Float)
    caller_end_s: Mapped[float] = mapped_column(Float)
    caller_audio_sha256: Mapped[str] = mapped_column(String(64))
    transcript: Mapped[str] = mapped_column(Text, default="")
    asr_confidence: Mapped[float] = mapped_column(Float, default=0.0)
    words: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    intent: Mapped[str] = mapped_column(String(64), default="")
    intent_confidence: Mapped[float] = mapped_column(Float, default=0.0)
    slots: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # secrets withheld
    reply: Mapped[str] = mapped_column(Text, default="")
    reply_source: Mapped[str] = mapped_column(String(16), default="flow")  # flow | llm
    reply_audio_sha256: Mapped[str | None] = mapped_column(String(64))
    latency_ms: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    # what was redacted before the turn was stored: {kind: count}, never the values
    redactions: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    call: Mapped[Call] = relationship(back_populates="turns")


class Annotation(Base):
    """One label on one turn: from a model (with its confidence) or from a reviewer.

    Corrections never overwrite: each is a new row that keeps the value it replaced.
    """

    __tablename__ = "annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(32))  # intent, slots, transcript, reply
    value: Mapped[Any] = mapped_column(JSON)
    previous: Mapped[Any] = mapped_column(JSON, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # model | review | import
    author: Mapped[str] = mapped_column(String(128), default="")  # model name or reviewer
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Dataset(Base):
    """A versioned dataset: its files live in ``path``, described by ``manifest``."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    path: Mapped[str] = mapped_column(Text)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # pretrain, finetune, asr
    base_model: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))  # running, completed, failed, interrupted
    output_dir: Mapped[str] = mapped_column(Text)
    step: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ModelVersion(Base):
    """A model that may serve calls. At most one per kind is ``promoted`` at a time."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # llm, asr
    name: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # candidate, promoted, retired, rejected
    training_run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id"),
                                                        nullable=True)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VerificationReport(Base):
    __tablename__ = "verification_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    baseline_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"),
                                                    nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # candidate and baseline
    gates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    report_path: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
