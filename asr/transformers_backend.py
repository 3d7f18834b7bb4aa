"""Whisper in Hugging Face transformers: the backend that runs what training/ fine-tunes.

It is slower than faster-whisper, so it serves evaluation of fine-tuned
checkpoints before they are converted back to CTranslate2, not live calls.
Decoding follows the same rules as the other backends (greedy, temperature 0,
no conditioning on earlier windows, word timestamps from the alignment heads)
so that a transcript difference means a weight difference.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from asr.transcript import LOGPROB_FLOOR, NO_SPEECH_PROB, Segment, Transcript, Word, is_silence
from voicedesk.config import AsrConfig
from voicedesk.errors import ModelError

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings about generation flags its Whisper code passes itself,
    for the duration of one call only: other engines in the process keep their logging."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


class TransformersWhisperTranscriber:
    name = "transformers"

    def __init__(self, model: str, config: AsrConfig) -> None:
        import torch
        from transformers import (
            WhisperFeatureExtractor,
            WhisperForConditionalGeneration,
            WhisperTokenizer,
        )
        self.model_ref = model
        self.config = config
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
        self._torch = torch
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            # Eager attention: word timing reads the cross-attention weights.
            self._model = WhisperForConditionalGeneration.from_pretrained(
                model, attn_implementation="eager", dtype=torch.float32).to(self._device).eval()
            self._features = WhisperFeatureExtractor.from_pretrained(model)
            self._tokenizer = WhisperTokenizer.from_pretrained(model)
        except (OSError, ValueError) as exc:
            raise ModelError(f"ASR model {model} could not be loaded by transformers: "
                             f"{str(exc).splitlines()[0]}") from None
        generation = self._model.generation_config
        if not getattr(generation, "alignment_heads", None):
            raise ModelError(f"ASR model {model} has no alignment_heads in generation_config.json; "
                             f"word timestamps need them (prepare the folder with "
                             f"ModelStore.whisper_hf)")
        self._multilingual = bool(getattr(generation, "is_multilingual", True))
        self._eot = int(generation.eos_token_id)
        self._sot = int(generation.decoder_start_token_id)
        self._no_speech = int(generation.no_timestamps_token_id) - 1

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        # Decodes at temperature 0 only, so ``fallback`` changes nothing here.
        duration = len(samples) / SAMPLE_RATE
        if len(samples) == 0:
            return Transcript(duration=0.0)
        torch = self._torch
        features = self._log_mel(samples)
        options: dict[str, Any] = {}
        if self._multilingual:
            options.update(task="transcribe", language=self.config.language or None)
        if prompt and prompt.strip():
            options["prompt_ids"] = self._tokenizer.get_prompt_ids(
                prompt, return_tensors="pt").to(self._device)
        with torch.inference_mode(), _quiet_transformers():
            output = self._model.generate(
                features.to(self._device),
                attention_mask=torch.ones(features.shape[:1] + features.shape[2:], dtype=torch.long,
                                          device=self._device),
                return_timestamps=True, return_token_timestamps=True, return_segments=True,
                output_hidden_states=True, num_beams=self.config.beam_size, do_sample=False,
                temperature=0.0, condition_on_prev_tokens=False,
                compression_ratio_threshold=None, logprob_threshold=LOGPROB_FLOOR,
                no_speech_threshold=NO_SPEECH_PROB, **options)
            return self._transcript(output["segments"][0], duration)

    def _log_mel(self, samples: np.ndarray) -> Any:
        """Log-mel frames of the speech only, computed as openai-whisper's ``transcribe`` does.

        The spectrogram is taken over the audio followed by 30 s of zeros and cut back
        to the speech; generate() then pads each window's mel with zeros. Padding
        the audio to 30 s instead (the feature extractor's default) changes the
        last window's input and, with it, timestamps and sometimes words.
        """
        padded = np.concatenate([samples.astype(np.float32, copy=False),
                                 np.zeros(WINDOW_SECONDS * SAMPLE_RATE, np.float32)])
        mel = self._features(padded, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                             truncation=False, padding="longest").input_features
        return mel[..., :len(samples) // self._features.hop_length]

    def _transcript(self, raw_segments: list[dict[str, Any]], duration: float) -> Transcript:
        windows: dict[int, tuple[float, float, str]] = {}  # one generate() result per window
        segments = []
        for raw in raw_segments:
            result = raw["result"]
            if id(result) not in windows:
                windows[id(result)] = self._window_stats(result)
            avg_logprob, no_speech_prob, _ = windows[id(result)]
            if is_silence(no_speech_prob, avg_logprob):
                continue
            segment = self._segment(raw, avg_logprob, no_speech_prob)
            if segment.text:
                segments.append(segment)
        language = next(iter(windows.values()))[2] if windows else (self.config.language or "en")
        return Transcript(tuple(segments), language, duration)

    def _window_stats(self, result: Any) -> tuple[float, float, str]:
        """Average log-probability, no-speech probability and language of one 30-s window.

        As in openai-whisper: the log-probability is averaged over every decoded
        token including the end token, and the no-speech probability is read at
        the start-of-transcript position, before any filtering of the logits.
        """
        torch = self._torch
        sequence = result["sequences"]
        scores = torch.stack(list(result["scores"])).float()
        start = len(sequence) - len(scores)
        chosen = sequence[start:start + len(scores)].long()
        logprobs = torch.log_softmax(scores, dim=-1).gather(-1, chosen[:, None])
        avg_logprob = float(logprobs.sum()) / max(1, len(scores))
        prompt = sequence[:start].tolist()
        sot = prompt.index(self._sot) if self._sot in prompt else len(prompt) - 1
        hidden = result["decoder_hidden_states"][0][-1][0, sot]  # last layer, after its norm
        logits = self._model.proj_out(hidden.to(self._device)).float()
        no_speech_prob = float(torch.softmax(logits, dim=-1)[self._no_speech])
        language = "en"
        if self._multilingual and sot + 1 < len(prompt):
            language = self._tokenizer.convert_ids_to_tokens(prompt[sot + 1]).strip("<|>")
        return avg_logprob, no_speech_prob, language

    def _segment(self, raw: dict[str, Any], avg_logprob: float, no_speech_prob: float) -> Segment:
        """One segment with its words.

        A word is a token that starts with a space plus the tokens that continue
        it, punctuation included. transformers times each token by where the
        alignment heads move on to the next one, i.e. its end; a token starts
        where the one before it ended.
        """
        torch = self._torch
        scores = raw["result"]["scores"]
        first_step = raw["idxs"][0] - (len(raw["result"]["sequences"]) - len(scores))
        start, end = float(raw["start"]), float(raw["end"])
        pieces: list[list[tuple[int, float, float, float]]] = []  # token, start, end, probability
        previous = start
        for i, (token, token_end) in enumerate(zip(raw["tokens"].tolist(),
                                                   raw["token_timestamps"].tolist(), strict=True)):
            token_end = min(max(float(token_end), previous), end)
            if token < self._eot:  # timestamp tokens mark time, not words
                probs = torch.softmax(scores[first_step + i][:self._eot].float(), dim=-1)
                if not pieces or self._tokenizer.convert_ids_to_tokens(token).startswith("Ġ"):
                    pieces.append([])
                pieces[-1].append((token, previous, token_end, float(probs[token])))
            previous = token_end
        words = tuple(Word(group[0][1], group[-1][2],
                           self._tokenizer.decode([token for token, *_ in group]),
                           float(np.mean([p for *_, p in group])))
                      for group in pieces)
        text = "".join(word.text for word in words).strip()
        return Segment(start, end, text, words, avg_logprob, no_speech_prob)
