"""Shared fixtures: real models from the cache, a fresh VOICEDESK_HOME per test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from voicedesk.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
JFK = SHARED_DATA / "asr" / "dev" / "whisper_jfk" / "jfk.flac"
EXAMPLES = REPO / "examples"


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate on lowercased, punctuation-free words (Levenshtein over words)."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The real model cache, shared by all tests so models are prepared once."""
    return load_config(environ={k: v for k, v in os.environ.items()
                                if k == "VOICEDESK_HOME"}).models_dir


@pytest.fixture
def home(tmp_path: Path, models_dir: Path) -> Path:
    """A fresh VOICEDESK_HOME whose models folder is the shared cache."""
    home = tmp_path / "home"
    home.mkdir()
    models_dir.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    return home


@pytest.fixture
def config(home: Path) -> Config:
    return load_config(environ={"VOICEDESK_HOME": str(home)})


@pytest.fixture(scope="session")
def assistant(models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from voice.assistant import Assistant

    home = tmp_path_factory.mktemp("assistant-home")
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    return Assistant.load(load_config(environ={"VOICEDESK_HOME": str(home)}))


def run_cli(args: list[str], home: Path, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEDESK_")}
    env["VOICEDESK_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "voicedesk", *args], cwd=cwd or home,
                          env=env, capture_output=True, text=True, timeout=timeout)
