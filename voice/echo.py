"""Is the caller talking, or is it our own voice coming back down the line?

Phones and speakerphones return part of what they play (line and acoustic
echo), typically 50-300 ms later and 10-30 dB down. Heard as speech, it would
barge in on the assistant's own reply. The gate keeps what the assistant
played on the line clock and asks, for each stretch of input that the VAD
calls speech, how well it is explained by a delayed, scaled copy of that
reference (normalised cross-correlation over the plausible delays). Echo
alone correlates strongly; a caller speaking over the echo does not, because
their voice is the larger part of the signal. Computed at 8 kHz with FFTs:
well under a millisecond per frame.
"""

from __future__ import annotations

import numpy as np

RATE = 8000


class ReferenceTrack:
    """What the assistant played, by line time, over the last ``keep_s`` seconds (8 kHz)."""

    def __init__(self, keep_s: float = 12.0) -> None:
        self.size = int(keep_s * RATE)
        self._ring = np.zeros(self.size, dtype=np.float32)
        self._end = 0  # line sample (8 kHz) just past the newest written sample
        self.last_audio_t = -1e9  # line time of the end of the last non-silent write

    def write(self, t: float, samples8k: np.ndarray) -> None:
        """Place audio that plays from line time ``t`` (8 kHz)."""
        start = int(round(t * RATE))
        n = len(samples8k)
        if n == 0:
            return
        if n > self.size:
            samples8k, start, n = samples8k[-self.size:], start + n - self.size, self.size
        idx = (np.arange(start, start + n)) % self.size
        if start > self._end:  # a gap since the last write: silence
            gap = np.arange(self._end, start) % self.size
            self._ring[gap[-self.size:]] = 0.0
        self._ring[idx] = samples8k
        self._end = max(self._end, start + n)
        if np.any(np.abs(samples8k) > 1e-4):
            self.last_audio_t = (start + n) / RATE

    def erase_from(self, t: float) -> None:
        """The rest was never played (barge-in): forget it."""
        start = max(0, int(round(t * RATE)))
        if start < self._end:
            self._ring[np.arange(start, self._end) % self.size] = 0.0
            self._end = start
            self.last_audio_t = min(self.last_audio_t, t)

    def read(self, t0: float, n: int) -> np.ndarray:
        start = int(round(t0 * RATE))
        out = np.zeros(n, dtype=np.float32)
        lo, hi = max(start, self._end - self.size, 0), min(start + n, self._end)
        if hi > lo:
            out[lo - start:hi - start] = self._ring[np.arange(lo, hi) % self.size]
        return out


class EchoGate:
    def __init__(self, reference: ReferenceTrack, window_s: float = 0.3,
                 max_delay_s: float = 0.5, threshold: float = 0.55) -> None:
        self.reference = reference
        self.window = int(window_s * RATE)
        self.max_delay = int(max_delay_s * RATE)
        self.threshold = threshold
        self.tail_s = max_delay_s + window_s
        self._input = np.zeros(self.window, dtype=np.float32)
        self._t = 0.0  # line time at the end of _input
        self.last_score = 0.0

    def push(self, samples8k: np.ndarray, t_end: float) -> None:
        """The newest input (8 kHz) ending at line time ``t_end``."""
        n = len(samples8k)
        if n >= self.window:
            self._input = samples8k[-self.window:].astype(np.float32)
        else:
            self._input = np.concatenate([self._input[n:], samples8k]).astype(np.float32)
        self._t = t_end

    def active(self) -> bool:
        """Whether echo is possible now: the assistant played something recently."""
        return self._t - self.reference.last_audio_t < self.tail_s

    def is_echo(self) -> bool:
        """Is the recent input mostly a delayed copy of what we played?"""
        if not self.active():
            self.last_score = 0.0
            return False
        x = self._input
        ex = float(np.dot(x, x))
        if ex < 1e-8:
            return False
        # A little past "now" too: the play-out time of the reference is an estimate.
        lead = RATE // 10
        ref = self.reference.read(self._t - (self.window + self.max_delay) / RATE,
                                  self.window + self.max_delay + lead)
        if not np.any(ref):
            self.last_score = 0.0
            return False
        # correlation of x with every window of ref, by FFT
        size = 1 << int(np.ceil(np.log2(len(ref) + len(x))))
        corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(x, size)), size)
        corr = corr[: len(ref) - len(x) + 1]
        energy = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
        window_energy = energy[len(x):] - energy[: len(ref) - len(x) + 1]
        ncc = corr / np.sqrt(np.maximum(window_energy, 1e-12) * ex)
        ncc[window_energy < 1e-6] = 0.0
        self.last_score = float(np.max(np.abs(ncc)))
        return self.last_score >= self.threshold
