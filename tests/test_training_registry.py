"""Model versions: registration, promotion only after verification, rollback, and the
generation a running service polls between turns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from training.registry import (
    PromotionWatcher,
    RegistryError,
    promote,
    record_verification,
    register,
    rollback,
    served,
    versions,
)
from training.store.migrate import upgrade


@pytest.fixture(scope="module")
def exported_whisper(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export (tiny.en, untrained): two versions are hard-linked copies of it."""
    from training.asr_finetune import load_whisper
    from training.export import export_whisper
    from voicedesk.models.prepare import ModelStore

    model, processor = load_whisper(ModelStore(models_dir).whisper_hf("tiny.en"))
    root = tmp_path_factory.mktemp("registry")
    return export_whisper(model, processor, root / "v1", {"note": "test"}).root


@pytest.fixture
def db(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    return engine


def copy_of(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target, copy_function=os.link)
    return target


def test_registering_the_same_folder_twice_is_one_version(db, exported_whisper: Path) -> None:
    first = register(db, exported_whisper)
    again = register(db, exported_whisper)
    assert first.id == again.id and first.status == "candidate" and first.kind == "asr"
    assert len(versions(db)) == 1


def test_an_unverified_or_failed_model_is_not_promoted(db, exported_whisper: Path) -> None:
    version = register(db, exported_whisper)
    with pytest.raises(RegistryError, match="has not been verified"):
        promote(db, str(version.id))
    record_verification(db, exported_whisper, False, {"candidate": {}, "baseline": {}}, [])
    with pytest.raises(RegistryError, match="failed verification"):
        promote(db, str(version.id))
    assert served(db).asr is None


def test_promote_then_rollback_restores_the_previous_version(db, exported_whisper: Path,
                                                             tmp_path: Path) -> None:
    second = copy_of(exported_whisper, tmp_path / "v2")
    watcher = PromotionWatcher(db, interval_s=0.0)
    assert watcher.poll() is None  # nothing changed yet

    v1 = record_verification(db, exported_whisper, True, {}, [])
    promote(db, str(v1.id))
    now = watcher.poll()
    assert now is not None and now.asr is not None and now.asr.id == v1.id
    assert now.asr_path() == str(exported_whisper.resolve() / "ct2")
    assert now.asr_path("transformers") == str(exported_whisper.resolve() / "hf")

    v2 = record_verification(db, second, True, {}, [])
    promote(db, "v2")  # by name
    later = watcher.poll()
    assert later is not None and later.asr.id == v2.id
    assert later.generation > now.generation
    assert {v.id: v.status for v in versions(db)} == {v1.id: "retired", v2.id: "promoted"}

    withdrawn, restored = rollback(db, "asr")
    assert (withdrawn.id, restored.id if restored else None) == (v2.id, v1.id)
    assert served(db).asr.id == v1.id and watcher.poll().asr.id == v1.id

    withdrawn, restored = rollback(db, "asr")  # the first promotion: back to the configured model
    assert withdrawn.id == v1.id and restored is None and served(db).asr is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(db, "asr")


def test_an_incomplete_folder_is_never_registered(db, exported_whisper: Path,
                                                  tmp_path: Path) -> None:
    from training.export import IncompleteModel

    broken = copy_of(exported_whisper, tmp_path / "broken")
    (broken / ".complete").unlink()
    with pytest.raises(IncompleteModel, match=r"missing or empty \.complete"):
        register(db, broken)
    assert versions(db) == []
