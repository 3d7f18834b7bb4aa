"""Whisper on CTranslate2 (faster-whisper): the default, fastest CPU backend.

Besides ``transcribe`` (any length, Whisper's own 30-s seek loop), the backend
decodes a packed window in exactly one pass (``transcribe_window``): batch
transcription packs several recordings into each window, and the seek loop's
habit of re-encoding the last few seconds of a window would cost a second
encoder pass for most of them.
"""

from __future__ import annotations

import os

import numpy as np

from asr.transcript import Segment, Transcript, Word, is_silence
from voicedesk.config import AsrConfig
from voicedesk.errors import ModelError

WINDOW_SAMPLES = 30 * 16_000
# faster-whisper's defaults for the checks that make its transcribe() decode again
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_LIMIT = -1.0
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


MAX_TOKENS = 220  # Whisper's own limit per window is 448, half for the prompt


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
            # Without the fallback nothing stops a repetition loop ("1-1-1-1-...") but the
            # token limit, and a pass that runs to 448 tokens stalls a live call for seconds:
            # bound it by what anyone can say in the audio (about 5 tokens a second).
            **({} if fallback else {"temperature": 0.0,
                                    "max_new_tokens": min(MAX_TOKENS, int(12 * duration) + 16)}),
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

    @property
    def one_language(self) -> bool:
        """Whether every window is decoded in one known language (English-only model, or
        ``asr.language`` set): only then may recordings share a window."""
        return self._english_only or bool(self.config.language)

    def transcribe_window(self, samples: np.ndarray) -> tuple[Transcript, float]:
        """At most 30 s decoded in one encoder pass and one greedy decoder pass.

        Returns the transcript and the time up to which it is complete. Whisper
        stops early when it thinks an utterance runs past the window; the seek
        loop of ``transcribe`` would then encode the window again from that
        point. Here the caller decides what to do with the rest (batch packing
        moves the pieces after that point into the next window). A pass that
        looks unreliable (repetitive, or improbable but not silent) is handed
        to ``transcribe``, which retries at higher temperatures, as the per-file
        path would; so is anything a single pass cannot do (beam search, a
        window over 30 s, a language to detect).
        """
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        if len(samples) == 0:
            return Transcript(duration=0.0), 0.0
        if len(samples) > WINDOW_SAMPLES or self.config.beam_size > 1 or not self.one_language:
            return self.transcribe(samples), len(samples) / 16_000
        model = self._model
        samples = samples.astype(np.float32, copy=False)
        features = model.feature_extractor(samples)
        frames = min(features.shape[-1] - 1, model.feature_extractor.nb_max_frames)
        duration = len(samples) / 16_000
        encoded = model.encode(pad_or_trim(features[:, :frames]))
        language = "en" if self._english_only else self.config.language
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                              task="transcribe", language=language)
        prompt = model.get_prompt(tokenizer, [], without_timestamps=False)
        result = model.model.generate(
            encoded, [prompt], beam_size=1, max_length=model.max_length, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            max_initial_timestamp_index=round(1.0 / model.time_precision))[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if is_silence(result.no_speech_prob, avg_logprob):
            return Transcript((), language, duration), duration
        text = tokenizer.decode(tokens).strip()
        if get_compression_ratio(text) > COMPRESSION_RATIO_LIMIT or avg_logprob < LOGPROB_LIMIT:
            return self.transcribe(samples), duration
        segments, seek, _ = model._split_segments_by_timestamps(
            tokenizer=tokenizer, tokens=tokens, time_offset=0.0, segment_size=frames,
            segment_duration=duration, seek=0)
        # Whole window, or up to the last timestamp when the last segment was left open.
        complete_s = min(duration, seek * model.feature_extractor.time_per_frame)
        segments = [s for s in segments if any(t < tokenizer.eot for t in s["tokens"])]
        if not segments:
            return Transcript((), language, duration), complete_s
        model.add_word_timestamps([segments], tokenizer, encoded, frames, PREPEND_PUNCTUATIONS,
                                  APPEND_PUNCTUATIONS, last_speech_timestamp=0.0)
        out = []
        for seg in segments:
            seg_text = tokenizer.decode(seg["tokens"]).strip()
            if not seg_text or seg["start"] == seg["end"]:
                continue
            words = tuple(Word(w["start"], min(w["end"], duration), w["word"], w["probability"])
                          for w in seg.get("words", ()))
            out.append(Segment(seg["start"], min(seg["end"], duration), seg_text, words,
                               avg_logprob, result.no_speech_prob))
        if complete_s < duration and out and out[-1].words:
            # as the seek loop does with word times: restart at the last word's end, which
            # alignment places better than the last timestamp token
            complete_s = max(0.0, min(complete_s, out[-1].words[-1].end))
        return Transcript(tuple(out), language, duration), complete_s
