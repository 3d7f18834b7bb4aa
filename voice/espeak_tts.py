"""espeak-ng: a formant voice from Debian's packages.

It is the TTS of last resort (no model files at all) and, being clearly a
different voice from the assistant's, the simulated caller in ``voicedesk
simulate --audio`` and the example recordings.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from voicedesk.errors import ConfigError, VoicedeskError


class EspeakSynthesizer:
    name = "espeak-ng"
    sample_rate = 22_050

    def __init__(self, voice: str = "en-us+f5", rate_wpm: int = 150, word_gap: int = 5,
                 pitch: int = 50) -> None:
        if shutil.which("espeak-ng") is None:
            raise ConfigError("espeak-ng is not installed: apt-get install espeak-ng")
        self.voice, self.rate_wpm, self.word_gap, self.pitch = voice, rate_wpm, word_gap, pitch

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        if not text.strip():
            return
        with tempfile.TemporaryDirectory(prefix="voicedesk-espeak-") as tmp:
            wav = Path(tmp) / "speech.wav"
            proc = subprocess.run(
                ["espeak-ng", "-v", self.voice, "-s", str(self.rate_wpm), "-g",
                 str(self.word_gap), "-p", str(self.pitch), "-w", str(wav), "--", text],
                capture_output=True, text=True, timeout=60)
            if proc.returncode != 0 or not wav.is_file():
                detail = (proc.stderr or proc.stdout).strip().splitlines()
                raise VoicedeskError(f"espeak-ng failed with voice {self.voice!r}: "
                                     f"{detail[0] if detail else proc.returncode}")
            audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        self.sample_rate = rate
        yield audio.mean(axis=1)
