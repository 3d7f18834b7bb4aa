"""Speech already synthesised, kept for the next time the same words are said.

An operator's assistant says the same sentences all day: "Could you tell me
your eight-digit account number?" was the first piece of 14 of the 57 replies
in the scenario suite, and half of all reply pieces there repeat. Synthesis
of a piece costs 70-400 ms on two cores, which a caller waits for whenever
the reply was not prepared early. So every call in the process shares one
cache of the synthesiser's audio by text, least recently used first out,
bounded in bytes (``tts.cache_mb``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from voicedesk.errors import ConfigError


class SpeechCache:
    """Audio by text; thread-safe, since synthesis runs in a pool."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._audio: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @classmethod
    def configured(cls, megabytes: int) -> SpeechCache:
        """The cache ``tts.cache_mb`` asks for (0: off)."""
        if megabytes < 0:
            raise ConfigError(f"tts.cache_mb = {megabytes}; expected 0 (no cache) or a size "
                              f"in megabytes, such as the default 64")
        return cls(megabytes * 1024 * 1024)

    def __len__(self) -> int:
        return len(self._audio)

    def speech(self, text: str, synthesize: Callable[[str], np.ndarray]) -> np.ndarray:
        """The audio for ``text``: kept, or made by ``synthesize`` and kept.

        Returns a copy, so no caller can change what the next call plays."""
        key = text
        with self._lock:
            kept = self._audio.get(key)
            if kept is not None:
                self._audio.move_to_end(key)
                self.hits += 1
                return kept.copy()
            self.misses += 1
        audio = np.asarray(synthesize(text), dtype=np.float32).reshape(-1)
        self._keep(key, audio.copy())
        return audio

    def _keep(self, key: str, audio: np.ndarray) -> None:
        if audio.nbytes > self.max_bytes or not len(audio):
            return  # too large to keep (or the cache is off), or nothing said
        with self._lock:
            if key in self._audio:
                return  # made twice at once: the first kept stands
            self._audio[key] = audio
            self._bytes += audio.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._audio.popitem(last=False)
                self._bytes -= dropped.nbytes
