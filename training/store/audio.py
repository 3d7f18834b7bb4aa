"""Content-addressed FLAC files: one per turn and side, named by the hash of the samples."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.audio import to_int16


class AudioStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.flac"

    def put(self, samples: np.ndarray, sample_rate: int) -> str:
        """Store the audio (idempotent) and return its sha256 (of rate + 16-bit PCM)."""
        pcm = to_int16(samples)
        digest = hashlib.sha256(sample_rate.to_bytes(4, "little") + pcm.tobytes()).hexdigest()
        path = self.path_for(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Per thread too: concurrent calls store the same greeting audio at once.
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            sf.write(str(tmp), pcm, sample_rate, format="FLAC", subtype="PCM_16")
            os.replace(tmp, path)
        return digest

    def get(self, digest: str) -> tuple[np.ndarray, int]:
        data, rate = sf.read(str(self.path_for(digest)), dtype="float32")
        return data, rate
