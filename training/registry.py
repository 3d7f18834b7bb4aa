"""Model versions: registered candidates, the promoted model of each kind, rollback.

Rows are ``ModelVersion``s in the call store. At most one version per kind
(llm, asr) is ``promoted``; none promoted means the configured (bundled)
model serves. Promotion needs a passed verification report unless forced,
because only a model proven no worse than the current one should answer
calls. Every promotion and rollback raises a generation number (kept in
the rows' ``info``), which a running service polls between turns
(``PromotionWatcher``) to learn that it should load another model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from training.export import ExportedModel, open_exported
from training.store.schema import ModelVersion, VerificationReport
from voicedesk.errors import VoicedeskError

KINDS = ("llm", "asr")


class RegistryError(VoicedeskError):
    pass


@dataclass(frozen=True)
class Version:
    id: int
    kind: str
    name: str
    path: str
    status: str
    created_at: datetime
    promoted_at: datetime | None
    training_run_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def exported(self) -> ExportedModel:
        return open_exported(self.path)


@dataclass(frozen=True)
class Served:
    """What should serve calls now; ``generation`` changes with every promotion or rollback."""

    generation: int
    llm: Version | None = None
    asr: Version | None = None

    def llm_path(self, engine: str) -> str | None:
        """The folder for ``llm.engine`` (None: keep the configured model)."""
        return str(self.llm.exported().serving_path(engine)) if self.llm else None

    def asr_path(self, backend: str = "faster-whisper") -> str | None:
        if self.asr is None:
            return None
        return str(self.asr.exported().serving_path(
            "transformers" if backend == "transformers" else "ct2"))


def _view(row: ModelVersion) -> Version:
    return Version(row.id, row.kind, row.name, row.path, row.status, row.created_at,
                   row.promoted_at, row.training_run_id, dict(row.info or {}))


def _now() -> datetime:
    return datetime.now(UTC)


def register(db: Engine, path: str | Path, name: str = "",
             training_run_id: str | None = None) -> Version:
    """Record an exported model as a candidate (once: the same folder again is the same row).

    The folder is checked first, so an incomplete export never becomes a version.
    """
    exported = open_exported(path)
    where = str(exported.root.resolve())
    with Session(db) as session, session.begin():
        for row in session.scalars(select(ModelVersion).where(ModelVersion.path == where)):
            return _view(row)
        # A training run exports into OUT/model: the run folder is the telling name.
        default = exported.root.parent.name if exported.root.name == "model" else \
            exported.root.name
        row = ModelVersion(kind=exported.kind, name=name or default, path=where,
                           status="candidate",
                           training_run_id=training_run_id or _run_id(session, exported),
                           info={k: v for k, v in exported.info.items() if k != "kind"},
                           created_at=_now())
        session.add(row)
        session.flush()
        return _view(row)


def _run_id(session: Session, exported: ExportedModel) -> str | None:
    from training.store.schema import TrainingRun

    run = exported.info.get("run_id")
    return run if run and session.get(TrainingRun, run) is not None else None


def versions(db: Engine, kind: str | None = None) -> list[Version]:
    with Session(db) as session:
        stmt = select(ModelVersion).order_by(ModelVersion.id)
        if kind:
            stmt = stmt.where(ModelVersion.kind == kind)
        return [_view(r) for r in session.scalars(stmt)]


def find(db: Engine, ref: str) -> Version:
    """A version by id, by name, or by its folder (registered on the way if new)."""
    with Session(db) as session:
        row = session.get(ModelVersion, int(ref)) if ref.isdigit() else None
        if row is None:
            rows = list(session.scalars(select(ModelVersion).where(ModelVersion.name == ref)))
            if len(rows) > 1:
                raise RegistryError(f"{len(rows)} versions are named {ref!r}; give the id "
                                    f"({', '.join(str(r.id) for r in rows)})")
            row = rows[0] if rows else None
        if row is not None:
            return _view(row)
    if Path(ref).expanduser().is_dir():
        return register(db, ref)
    raise RegistryError(f"no model version {ref!r}: give an id or name from `voicedesk models "
                        f"list`, or an exported model folder")


def generation(session: Session) -> int:
    return max((int((r.info or {}).get("generation", 0))
                for r in session.scalars(select(ModelVersion))), default=0)


def _stamp(row: ModelVersion, gen: int, **extra: Any) -> None:
    row.info = {**(row.info or {}), "generation": gen, **extra}  # a new dict: tracked


def promote(db: Engine, ref: str, force: bool = False) -> Version:
    """Make ``ref`` the served model of its kind; the one it replaces is retired."""
    version = find(db, ref)
    version.exported()  # still complete on disk
    with Session(db) as session, session.begin():
        row = session.get(ModelVersion, version.id)
        assert row is not None
        if row.status == "promoted":
            return _view(row)
        if not force:
            report = session.scalars(select(VerificationReport)
                                     .where(VerificationReport.candidate_id == row.id)
                                     .order_by(VerificationReport.id.desc())).first()
            if report is None or not report.passed:
                state = "failed verification" if report else "has not been verified"
                raise RegistryError(f"model version {row.id} ({row.name}) {state}; run "
                                    f"`voicedesk verify {row.path}` first, or pass --force")
        gen = generation(session) + 1
        for current in session.scalars(select(ModelVersion).where(
                ModelVersion.kind == row.kind, ModelVersion.status == "promoted")):
            current.status = "retired"
            _stamp(current, gen)
        row.status = "promoted"
        row.promoted_at = _now()
        _stamp(row, gen, previous=_previous_ids(session, row.kind, row.id))
        session.flush()
        return _view(row)


def _previous_ids(session: Session, kind: str, exclude: int) -> list[int]:
    rows = session.scalars(select(ModelVersion).where(
        ModelVersion.kind == kind, ModelVersion.status == "retired",
        ModelVersion.id != exclude, ModelVersion.promoted_at.is_not(None)))
    return [r.id for r in sorted(rows, key=lambda r: r.promoted_at or _now())]


def rollback(db: Engine, kind: str) -> tuple[Version, Version | None]:
    """Withdraw the promoted ``kind`` and restore the one promoted before it.

    Returns (withdrawn, restored); restored is None when the configured
    (bundled) model serves again. A withdrawn version is marked rejected so a
    second rollback goes further back instead of returning to it.
    """
    if kind not in KINDS:
        raise RegistryError(f"model kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    with Session(db) as session, session.begin():
        current = session.scalars(select(ModelVersion).where(
            ModelVersion.kind == kind, ModelVersion.status == "promoted")).first()
        if current is None:
            raise RegistryError(f"no {kind} version is promoted; the configured model already "
                                f"serves, so there is nothing to roll back")
        gen = generation(session) + 1
        current.status = "rejected"
        _stamp(current, gen, rolled_back_at=_now().isoformat())
        restored = None
        for previous_id in reversed((current.info or {}).get("previous", [])):
            candidate = session.get(ModelVersion, previous_id)
            if candidate is not None and candidate.status == "retired":
                restored = candidate
                break
        if restored is not None:
            restored.status = "promoted"
            restored.promoted_at = _now()
            _stamp(restored, gen)
        session.flush()
        return _view(current), _view(restored) if restored else None


def served(db: Engine) -> Served:
    """The promoted version of each kind and the generation: cheap enough to ask per turn."""
    with Session(db) as session:
        rows = list(session.scalars(select(ModelVersion)))
        gen = max((int((r.info or {}).get("generation", 0)) for r in rows), default=0)
        promoted = {r.kind: _view(r) for r in rows if r.status == "promoted"}
    return Served(gen, promoted.get("llm"), promoted.get("asr"))


class PromotionWatcher:
    """Between turns, ``poll()`` says whether another model should now serve.

    It reads the registry at most every ``interval_s`` seconds and returns the
    new ``Served`` only when the generation moved, so the call loop swaps
    models (load the new one, then replace the reference) between turns and
    no call in progress is dropped.
    """

    def __init__(self, db: Engine, interval_s: float = 2.0) -> None:
        self.db = db
        self.interval_s = interval_s
        self.current = served(db)
        self._checked = time.monotonic()

    def poll(self) -> Served | None:
        now = time.monotonic()
        if now - self._checked < self.interval_s:
            return None
        self._checked = now
        latest = served(self.db)
        if latest.generation == self.current.generation:
            return None
        self.current = latest
        return latest


def record_verification(db: Engine, candidate: str | Path, passed: bool,
                        metrics: dict[str, Any], gates: list[dict[str, Any]],
                        report_path: str = "") -> Version:
    """Store a verdict (``VerificationReport``) against the candidate's version, and mark
    a failed candidate rejected so it cannot be promoted by mistake."""
    version = register(db, candidate)
    with Session(db) as session, session.begin():
        row = session.get(ModelVersion, version.id)
        assert row is not None
        baseline = session.scalars(select(ModelVersion).where(
            ModelVersion.kind == row.kind, ModelVersion.status == "promoted")).first()
        session.add(VerificationReport(
            candidate_id=row.id, baseline_id=baseline.id if baseline else None, passed=passed,
            metrics=metrics, gates=gates, report_path=report_path, created_at=_now()))
        if row.status == "candidate" and not passed:
            row.status = "rejected"
        elif row.status == "rejected" and passed and "rolled_back_at" not in (row.info or {}):
            row.status = "candidate"
        session.flush()
        return _view(row)
