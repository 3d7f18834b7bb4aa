"""What the store holds for training: calls, turns, labels, reviews, redactions, datasets."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from training.data.clean import CleaningOptions, clean
from training.data.labels import views
from training.store import CallStore
from training.store.schema import Annotation, Call, Dataset


def store_stats(store: CallStore, cleaning: CleaningOptions | None = None) -> dict[str, Any]:
    with Session(store.engine) as session:
        turns = views(session)
        calls = session.scalar(select(func.count()).select_from(Call)) or 0
        by_source = dict(session.execute(select(Annotation.source, func.count())
                                         .group_by(Annotation.source)).all())
        datasets = [{"name": d.name, "version": d.version, "path": d.path,
                     "created_at": d.created_at.isoformat(timespec="seconds")}
                    for d in session.scalars(select(Dataset).order_by(Dataset.name,
                                                                      Dataset.version))]
    redactions: Counter[str] = Counter()
    for view in turns:
        redactions.update(view.redactions)
    cleaned = clean(turns, cleaning)
    return {
        "calls": calls,
        "turns": len(turns),
        "reviewed_turns": sum(v.intent_reviewed for v in turns),
        "model_labelled_turns": sum(bool(v.model_labelled_by) for v in turns),
        "annotations": {str(k): int(v) for k, v in sorted(by_source.items())},
        "intents": dict(Counter(v.intent or "(none)" for v in turns).most_common()),
        "redactions": dict(sorted(redactions.items())),
        "cleaning": cleaned.to_json(),
        "datasets": datasets,
    }
