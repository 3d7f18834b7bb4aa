"""Training runs as the call store records them (``TrainingRun`` rows), and their folders.

A run folder keeps its id in ``run.json``, so a resumed run updates the same
row instead of starting a second one. Without a store (a library caller, a
test) the folder alone is the record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from training.loop import LoopOptions, LoopResult, TrainingInterrupted, train
from training.store.schema import Dataset, TrainingRun

RUN_FILE = "run.json"


def _now() -> datetime:
    return datetime.now(UTC)


class RunLog:
    """The ``TrainingRun`` row of one run folder; every method is a no-op without a store."""

    def __init__(self, engine: Engine | None, out: Path, kind: str, base_model: str,
                 config: dict[str, Any], dataset: Path | None = None) -> None:
        self.engine = engine
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        path = out / RUN_FILE
        known = json.loads(path.read_text()) if path.is_file() else {}
        self.id: str = known.get("id") or str(uuid.uuid4())
        path.write_text(json.dumps({"id": self.id, "kind": kind, "base_model": base_model,
                                    "dataset": str(dataset) if dataset else None,
                                    "config": config}, indent=2, default=str) + "\n")
        if engine is None:
            return
        with Session(engine) as session, session.begin():
            row = session.get(TrainingRun, self.id)
            if row is None:
                row = TrainingRun(id=self.id, kind=kind, base_model=base_model,
                                  dataset_id=_dataset_id(session, dataset),
                                  config=json.loads(json.dumps(config, default=str)),
                                  output_dir=str(out), started_at=_now(), step=0, metrics={})
                session.add(row)
            row.status = "running"
            row.finished_at = None

    def progress(self, step: int, metrics: dict[str, Any]) -> None:
        self._update(step=step, metrics=metrics)

    def finish(self, status: str, step: int | None = None,
               metrics: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"status": status, "finished_at": _now()}
        if step is not None:
            values["step"] = step
        if metrics is not None:
            values["metrics"] = metrics
        self._update(**values)

    def _update(self, **values: Any) -> None:
        if self.engine is None:
            return
        with Session(self.engine) as session, session.begin():
            row = session.get(TrainingRun, self.id)
            if row is not None:
                for key, value in values.items():
                    setattr(row, key, value)


def _dataset_id(session: Session, dataset: Path | None) -> int | None:
    """The ``Dataset`` row whose folder is ``dataset``, when the builder registered it."""
    if dataset is None:
        return None
    wanted = str(dataset.resolve())
    for row in session.scalars(select(Dataset)):
        if str(Path(row.path).expanduser().resolve()) == wanted:
            return row.id
    return None


def train_logged(model: Any, examples: Sequence[Any], collate: Callable[[list[Any]], Any],
                 loss_fn: Callable[[Any, Any], Any], out: Path, loop: LoopOptions,
                 fingerprint: dict[str, Any], log: RunLog | None,
                 on_step: Callable[[int, int, float], None] | None = None,
                 **train_options: Any) -> LoopResult:
    """``training.loop.train`` (``train_options``: its keyword arguments) with the run's
    row kept current and marked when it stops."""

    def step_hook(step: int, steps: int, value: float) -> None:
        if log is not None and (step % loop.save_every == 0 or step == steps):
            log.progress(step, {"loss": value})
        if on_step is not None:
            on_step(step, steps, value)

    try:
        return train(model, examples, collate, loss_fn, out, loop, fingerprint, step_hook,
                     **train_options)
    except TrainingInterrupted as stop:
        if log is not None:
            log.finish("interrupted", stop.step)
        raise
    except BaseException:
        if log is not None:
            log.finish("failed")
        raise
