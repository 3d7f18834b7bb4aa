"""Whisper in openai-whisper, the reference implementation (the design card's baseline).

It is several times slower than faster-whisper on a CPU; it is here so that
accuracy and speed claims can be checked against the original code on the
same weights, and so that checkpoints from the openai-whisper world run.
Decoding is set up like the other backends: greedy, temperature 0 with no
fallback, no conditioning on earlier windows, word timestamps on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from asr.transcript import LOGPROB_FLOOR, NO_SPEECH_PROB, Segment, Transcript, Word, is_silence
from voicedesk.config import AsrConfig
from voicedesk.errors import ModelError


def load_checkpoint(path: Path, device: str) -> Any:
    """``whisper.load_model`` plus the alignment heads our converter stores in the file.

    openai-whisper only knows the heads of its own named downloads; without them,
    word times come from a default set of heads and drift from the other backends.
    """
    import torch
    from whisper.model import ModelDimensions, Whisper

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(f"ASR model {path} is not an openai-whisper checkpoint "
                         f"({str(exc).splitlines()[0]}); prepare one with "
                         f"ModelStore.whisper_openai or whisper.load_model's downloads") from None
    heads = checkpoint.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.to(device)


class OpenAIWhisperTranscriber:
    name = "openai-whisper"

    def __init__(self, checkpoint: Path, config: AsrConfig) -> None:
        import torch

        self.model_ref = str(checkpoint)
        self.config = config
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = load_checkpoint(checkpoint, self._device)

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        # Decodes at temperature 0 only, so ``fallback`` changes nothing here.
        import whisper

        duration = len(samples) / 16_000
        if len(samples) == 0:
            return Transcript(duration=0.0)
        language = (self.config.language or None) if self._model.is_multilingual else "en"
        result = whisper.transcribe(
            self._model, samples.astype(np.float32, copy=False),
            verbose=None, language=language, task="transcribe",
            temperature=0.0, beam_size=self.config.beam_size if self.config.beam_size > 1 else None,
            word_timestamps=True, condition_on_previous_text=False, initial_prompt=prompt,
            no_speech_threshold=NO_SPEECH_PROB, logprob_threshold=LOGPROB_FLOOR,
            fp16=self._device == "cuda",
        )
        segments = []
        for seg in result["segments"]:
            if is_silence(seg["no_speech_prob"], seg["avg_logprob"]):
                continue
            words = tuple(Word(float(w["start"]), float(w["end"]), w["word"],
                               float(w["probability"])) for w in seg.get("words", ()))
            segments.append(Segment(float(seg["start"]), float(seg["end"]), seg["text"].strip(),
                                    words, float(seg["avg_logprob"]),
                                    float(seg["no_speech_prob"])))
        return Transcript(tuple(segments), result.get("language") or "en", duration)
