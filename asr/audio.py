"""Reading speech audio into the one format every stage uses: mono float32.

Whisper and the voice activity detector work at 16 kHz; recordings arrive at
whatever rate and channel count the caller's system used. Conversion happens
here, at the edge, with a clear reason whenever a file cannot be used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voicedesk.errors import AudioError

SPEECH_RATE = 16_000
MIN_RATE = 8_000  # telephone narrowband: anything lower cannot carry speech
MAX_RATE = 384_000


@dataclass(frozen=True)
class Audio:
    """Mono samples in [-1, 1] at ``sample_rate``, with where they came from."""

    samples: np.ndarray
    sample_rate: int
    source: str = ""
    source_rate: int = 0
    source_channels: int = 1

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def slice(self, start_s: float, end_s: float) -> np.ndarray:
        a = max(0, int(round(start_s * self.sample_rate)))
        b = min(len(self.samples), int(round(end_s * self.sample_rate)))
        return self.samples[a:b]


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """High-quality band-limited resampling (soxr VHQ); a no-op at equal rates."""
    if rate == target or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples.astype(np.float32, copy=False), rate, target,
                         quality="VHQ").astype(np.float32, copy=False)


def load_audio(path: str | Path, rate: int = SPEECH_RATE, channel: int | None = None) -> Audio:
    """Read any file libsndfile can decode, as mono at ``rate``.

    Stereo is mixed down unless ``channel`` picks one side; more than two
    channels need an explicit channel, since mixing a multi-party recording
    would blur who said what.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file {path} does not exist")
    if path.is_dir():
        raise AudioError(f"{path} is a folder; expected an audio file (WAV, FLAC, OGG, MP3)")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")
    try:
        info = sf.info(str(path))
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = str(exc).split(":")[-1].strip() or type(exc).__name__
        raise AudioError(
            f"{path} is not a readable audio file ({reason}); expected WAV, FLAC, OGG or MP3"
        ) from None
    if info.frames > 0 and len(data) < info.frames * 0.9:
        raise AudioError(f"audio file {path} is truncated: header says {info.frames} frames, "
                         f"only {len(data)} could be read")
    if len(data) == 0:
        raise AudioError(f"audio file {path} contains no audio (0 samples)")
    if not MIN_RATE <= source_rate <= MAX_RATE:
        raise AudioError(f"audio file {path} is sampled at {source_rate} Hz; voicedesk needs "
                         f"{MIN_RATE}–{MAX_RATE} Hz: resample it (sox in.wav -r 16000 out.wav)")
    channels = data.shape[1]
    if channel is not None:
        if not 0 <= channel < channels:
            raise AudioError(f"audio file {path} has {channels} channel(s); channel {channel} "
                             f"does not exist (channels count from 0)")
        mono = data[:, channel]
    elif channels == 1:
        mono = data[:, 0]
    elif channels == 2:
        mono = data.mean(axis=1)
    else:
        raise AudioError(f"audio file {path} has {channels} channels; pick the caller's with "
                         f"--channel N (0-{channels - 1})")
    if not np.isfinite(mono).all():
        raise AudioError(f"audio file {path} contains invalid samples (NaN or infinity)")
    return Audio(samples=resample(mono, source_rate, rate), sample_rate=rate, source=str(path),
                 source_rate=source_rate, source_channels=channels)


def to_int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
