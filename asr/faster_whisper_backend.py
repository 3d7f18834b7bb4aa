"""Whisper on CTranslate2 (faster-whisper): the default, fastest CPU backend."""

from __future__ import annotations

import os

import numpy as np

from asr.transcript import Segment, Transcript, Word
from voicedesk.config import AsrConfig
from voicedesk.errors import ModelError


class FasterWhisperTranscriber:
    name = "faster-whisper"

    def __init__(self, model: str, config: AsrConfig) -> None:
        from faster_whisper import WhisperModel

        self.model_ref = model
        self.config = config
        threads = config.threads or os.cpu_count() or 1
        try:
            self._model = WhisperModel(model, device="auto", compute_type=config.compute_type,
                                       cpu_threads=threads)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"ASR model {model} could not be loaded by faster-whisper: "
                             f"{str(exc).splitlines()[0]}") from None
        self._english_only = not self._model.model.is_multilingual

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        duration = len(samples) / 16_000
        if len(samples) == 0:
            return Transcript(duration=0.0)
        language = "en" if self._english_only else (self.config.language or None)
        segments, info = self._model.transcribe(
            samples.astype(np.float32, copy=False),
            language=language,
            beam_size=self.config.beam_size,
            word_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=prompt,
            vad_filter=False,
            **({} if fallback else {"temperature": 0.0}),
            without_timestamps=False,
        )
        out = []
        for seg in segments:
            # Whisper invents text on silence; its own no-speech estimate, paired with a
            # low average log-probability, is the documented way to drop such segments.
            if seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
                continue
            words = tuple(Word(w.start, w.end, w.word, w.probability) for w in seg.words or ())
            out.append(Segment(seg.start, seg.end, seg.text.strip(), words, seg.avg_logprob,
                               seg.no_speech_prob))
        return Transcript(tuple(out), info.language, duration)
