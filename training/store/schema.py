"""Tables of the call store (SQLAlchemy 2). Changes go through an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
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
    call: Mapped[Call] = relationship(back_populates="turns")
