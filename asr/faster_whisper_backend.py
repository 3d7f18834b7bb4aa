"""Whisper on CTranslate2 (faster-whisper): the default, fastest CPU backend.

Besides ``transcribe`` (any length, Whisper's own 30-s seek loop), the backend
decodes a packed window with exactly one encoder pass (``transcribe_window``):
batch transcription packs several recordings into each window. Whisper's
seek loop would encode most windows twice: it re-encodes from wherever the
decoder stops, and the decoder often stops after the first packed utterance.
Here the decoder instead starts again on the same encoder output at the next
utterance (its first timestamp forced), for about a fifth of the cost.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asr.transcript import Segment, Transcript, Word, is_silence, says_nothing
from voicedesk.config import AsrConfig
from voicedesk.errors import ConfigError, ModelError

WINDOW_SAMPLES = 30 * 16_000
# faster-whisper's defaults for the checks that make its transcribe() decode again
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_LIMIT = -1.0
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


# A segment's closing timestamp may overshoot the silence after an utterance by this much
# and the next utterance still count as unheard (timestamps are coarse at the edges).
TIMESTAMP_SLACK_S = 0.6
MIN_ADVANCE_S = 0.3  # a continuation starts at least this far past the previous one
MAX_TOKENS = 220  # Whisper's own limit per window is 448, half for the prompt
# Encoder outputs kept for audio heard again soon (a hinted pass, then a beam search over
# the same samples): each is at most 1,500 x d_model floats (2.3 MB for tiny).
ENCODED_KEPT = 4


class FasterWhisperTranscriber:
    name = "faster-whisper"

    def __init__(self, model: str, config: AsrConfig, replicas: int = 1) -> None:
        """``replicas`` model workers sharing the weights, each with ``config.threads``
        threads, serve that many ``transcribe`` calls from Python threads at once."""
        from faster_whisper import WhisperModel

        from asr.encoder_context import short_context_model

        if not 5 <= config.context_s <= 30:
            raise ConfigError(f"asr.context_s = {config.context_s:g}: the shortest encoder "
                              f"window must be 5-30 s (15 keeps Whisper's accuracy, 30 is "
                              f"its full window)")
        self.model_ref = model
        self.config = config
        self.replicas = max(1, replicas)
        threads = config.threads or os.cpu_count() or 1
        try:
            self._model = short_context_model()(
                model, device="auto", compute_type=config.compute_type, cpu_threads=threads,
                num_workers=self.replicas)
            # Whisper's decoder gains nothing from a second thread (tiny.en on 2 cores: 0.13 s
            # with both, 0.08 s with one, for a 5-s turn), its encoder a lot (0.24 s against
            # 0.40 s): a model with several threads encodes with them all and decodes a
            # streaming pass on a single-threaded handle of the same weights.
            self._decoder = (WhisperModel(model, device="cpu", compute_type=config.compute_type,
                                          cpu_threads=1, num_workers=1)
                             if threads > 1 and self.replicas == 1
                             and self._model.model.device == "cpu" else None)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"ASR model {model} could not be loaded by faster-whisper: "
                             f"{str(exc).splitlines()[0]}") from None
        self._english_only = not self._model.model.is_multilingual
        self._encoded: OrderedDict[tuple[int, float, bytes], tuple[Any, int]] = OrderedDict()
        self._encoded_lock = threading.Lock()

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        return self._transcribe(samples, prompt, fallback, 30.0)

    def quick_pass(self, samples: np.ndarray, prompt: str | None = None) -> Transcript:
        """A pass without fallback over the shorter window of ``asr.context_s``."""
        return self._transcribe(samples, prompt, False, self.config.context_s)

    def _transcribe(self, samples: np.ndarray, prompt: str | None, fallback: bool,
                    window_s: float) -> Transcript:
        duration = len(samples) / 16_000
        if len(samples) == 0:
            return Transcript(duration=0.0)
        if not fallback and self._decoder is not None:
            heard = self._split_pass(samples, prompt, window_s)
            if heard is not None:
                return heard
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
            if (seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0) or says_nothing(seg.text):
                continue
            words = tuple(Word(w.start, w.end, w.word, w.probability) for w in seg.words or ())
            out.append(Segment(seg.start, seg.end, seg.text.strip(), words, seg.avg_logprob,
                               seg.no_speech_prob))
        return Transcript(tuple(out), info.language, duration)

    @property
    def splits_decoding(self) -> bool:
        """Whether streaming passes decode on a single-threaded handle (see __init__)."""
        return self._decoder is not None

    def _split_pass(self, samples: np.ndarray, prompt: str | None, window_s: float = 30.0
                    ) -> Transcript | None:
        """One greedy pass, encoded with every thread and decoded on the single-threaded
        handle: what ``transcribe`` gives without fallback, for a streaming pass. None
        where that needs Whisper's seek loop (over 30 s, the decoder stopping early,
        beam search, a language to detect)."""
        from faster_whisper.tokenizer import Tokenizer

        if (len(samples) > WINDOW_SAMPLES or self.config.beam_size > 1
                or not self.one_language or self._decoder is None):
            return None
        model, decoding = self._model, self._decoder
        samples = samples.astype(np.float32, copy=False)
        duration = len(samples) / 16_000
        encoded, frames = self._encode(samples, window_s)
        language = "en" if self._english_only else self.config.language
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                              task="transcribe", language=language)
        previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
        decoder = _WindowDecoder(decoding, tokenizer, encoded, previous,
                                 min(MAX_TOKENS, int(12 * duration) + 16))
        heard = decoder.decode(None)
        if is_silence(heard.no_speech_prob, heard.avg_logprob):
            return Transcript((), language, duration)
        if heard.repetitive:
            return None  # a repetition loop ("4, 4, 4, ..."): faster-whisper's own pass
        # Improbable but not repetitive (a short first pass: "This is..." at -1.05): with
        # one temperature, faster-whisper's own pass decodes the same tokens again after a
        # second encoder pass, which made the first partial's p90 1.2 s instead of 0.9 s.
        _, until, stopped_inside = decoder.heard(heard.tokens)
        if stopped_inside and until < duration - 1.0:
            return None  # Whisper would seek on from where it stopped
        segments = decoder.segments(heard.tokens, frames, duration)
        if segments:
            decoding.add_word_timestamps([segments], tokenizer, encoded, frames,
                                         PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS,
                                         last_speech_timestamp=0.0)
        out = _segments(segments, tokenizer, duration, heard.avg_logprob, heard.no_speech_prob)
        return Transcript(tuple(out), language, duration)

    def alternatives(self, samples: np.ndarray, prompt: str | None = None,
                     count: int = 8) -> list[str]:
        """Up to ``count`` readings of one utterance, the likeliest first: a beam search
        (without timestamps) over one encoder pass, every finished beam kept.

        Greedy decoding gives one reading; when it does not fit what was asked for
        (eight digits for an account number, and Whisper heard "1, 1, 1, 1, 1" for
        four ones), the answer is often among the next few. Over 30 s there is no
        single window to search: the greedy transcript is the only reading.
        """

        if len(samples) == 0:
            return []
        if len(samples) > WINDOW_SAMPLES or not self.one_language:
            return [self.transcribe(samples, prompt).text]
        return [text for text, _, _ in self._beam_readings(samples, prompt, count)[0]]

    def reading_that_fits(self, samples: np.ndarray, prompt: str | None,
                          fits: Callable[[str], bool], count: int = 8) -> Transcript | None:
        """The likeliest of ``alternatives`` that ``fits``, with word times; None when
        none does, or where one window cannot be searched (over 30 s, a language to
        detect). The encoder pass of a pass over the same samples just before (the
        greedy reading that did not fit) is reused."""
        if len(samples) == 0 or len(samples) > WINDOW_SAMPLES or not self.one_language:
            return None
        samples = samples.astype(np.float32, copy=False)
        readings, tokenizer, encoded, frames = self._beam_readings(samples, prompt, count)
        chosen, score = next(((ids, score) for text, ids, score in readings if fits(text)),
                             (None, 0.0))
        if chosen is None:
            return None
        duration = len(samples) / 16_000
        decoder = _WindowDecoder(self._model, tokenizer, encoded)
        segments = decoder.segments(chosen, frames, duration)  # no timestamps: one segment
        if segments:
            self._model.add_word_timestamps([segments], tokenizer, encoded, frames,
                                            PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS,
                                            last_speech_timestamp=0.0)
        language = "en" if self._english_only else self.config.language
        # the beam's score is its average log-probability (length penalty 1)
        return Transcript(tuple(_segments(segments, tokenizer, duration, score, 0.0)), language,
                          duration)

    def _beam_readings(self, samples: np.ndarray, prompt: str | None, count: int
                       ) -> tuple[list[tuple[str, list[int], float]], Any, Any, int]:
        """A beam search's distinct readings (text, token ids, score), likeliest first,
        over one encoder pass; with the tokenizer, encoder output and frame count."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        samples = samples.astype(np.float32, copy=False)
        encoded, frames = self._encode(samples)
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                              language="en" if self._english_only else self.config.language)
        previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
        start = model.get_prompt(tokenizer, previous, without_timestamps=True)
        new_tokens = min(MAX_TOKENS, int(12 * len(samples) / 16_000) + 16)
        result = model.model.generate(
            encoded, [start], beam_size=max(1, count), num_hypotheses=max(1, count),
            max_length=min(model.max_length, len(start) + new_tokens), suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), return_scores=True)[0]
        readings: list[tuple[str, list[int], float]] = []
        for ids, score in zip(result.sequences_ids, result.scores, strict=True):
            tokens = [t for t in ids if t < tokenizer.eot]
            text = tokenizer.decode(tokens).strip()
            if text and text not in (r for r, _, _ in readings):
                readings.append((text, tokens, float(score)))
        return readings, tokenizer, encoded, frames

    def _encode(self, samples: np.ndarray, window_s: float = 30.0) -> tuple[Any, int]:
        """Whisper's encoder output for at most 30 s of float32 samples, over a window of
        at least ``window_s`` (``asr/encoder_context.py``), and its frame count; the last
        few are kept, so samples heard again are not encoded again."""
        from faster_whisper.audio import pad_or_trim

        key = (len(samples), window_s,
               hashlib.blake2b(samples.tobytes(), digest_size=16).digest())
        with self._encoded_lock:
            if key in self._encoded:
                self._encoded.move_to_end(key)
                return self._encoded[key]
        model = self._model
        features = model.feature_extractor(samples)
        frames = min(features.shape[-1] - 1, model.feature_extractor.nb_max_frames)
        encoded = (model.encode(pad_or_trim(features[:, :frames]), window_s), frames)
        with self._encoded_lock:
            self._encoded[key] = encoded
            while len(self._encoded) > ENCODED_KEPT:
                self._encoded.popitem(last=False)
        return encoded

    @property
    def one_language(self) -> bool:
        """Whether every window is decoded in one known language (English-only model, or
        ``asr.language`` set): only then may recordings share a window."""
        return self._english_only or bool(self.config.language)

    def transcribe_window(self, samples: np.ndarray, starts: Sequence[float] = (),
                          short: bool = False) -> tuple[Transcript, float]:
        """At most 30 s decoded with one encoder pass, and greedy decoder passes over it.

        Returns the transcript and the time up to which it is complete. Whisper
        stops early when it thinks an utterance runs past the window, and often
        after the first of several packed utterances; its seek loop would then
        encode the window again from that point. ``starts`` are the times where
        separate utterances begin (packed pieces): when the decoder stops at or
        before one of them, it decodes again from that time on the same encoder
        output (the first token forced to that timestamp), which costs a
        fraction of an encoder pass. Where it stops inside an utterance, the
        caller decides what to do with the rest (batch packing moves it into the
        next window). A first pass that looks unreliable (repetitive, or
        improbable but not silent) is handed to ``transcribe``, which retries at
        higher temperatures, as the per-file path would; so is anything a single
        pass cannot do (beam search, a window over 30 s, a language to detect).
        A window of several utterances whose first pass is unreliable comes back
        empty and complete up to 0 s: its utterances are each decoded alone.
        ``short``: the encoder looks at the audio plus 2 s, at least ``asr.context_s``,
        not all 30 s (``asr/encoder_context.py``).
        """
        if len(samples) == 0:
            return Transcript(duration=0.0), 0.0
        if not self._decodes_windows(samples):
            return self.transcribe(samples), len(samples) / 16_000
        window = self._window(samples, short)
        return self._finish(window, window.decoder.decode(None), starts)

    def transcribe_windows(self, pieces: Sequence[np.ndarray], short: bool = False
                           ) -> list[tuple[Transcript, float]]:
        """Several windows as ``transcribe_window`` would decode each, their first decoder
        passes run as one batch: a batch of two decodes in about 0.8 times the time of
        two passes one after the other (the weights of Whisper's 51,865-token output
        layer are read once a step for both), the same tokens as alone."""
        out: list[tuple[Transcript, float] | None] = [None] * len(pieces)
        windows: dict[int, _Window] = {}
        for i, samples in enumerate(pieces):
            if len(samples) and self._decodes_windows(samples):
                windows[i] = self._window(samples, short)
            else:
                out[i] = self.transcribe_window(samples, short=short)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, window in windows.items():
            by_shape.setdefault(tuple(window.encoded.shape), []).append(i)
        for group in by_shape.values():
            firsts = _first_passes([windows[i].decoder for i in group])
            for i, first in zip(group, firsts, strict=True):
                out[i] = self._finish(windows[i], first, ())
        return [heard for heard in out if heard is not None]

    def _decodes_windows(self, samples: np.ndarray) -> bool:
        """Whether a window decodes here, not in the seek loop (beam search, more than
        30 s, a language to detect)."""
        return (len(samples) <= WINDOW_SAMPLES and self.config.beam_size == 1
                and self.one_language)

    def _window(self, samples: np.ndarray, short: bool) -> _Window:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        samples = samples.astype(np.float32, copy=False)
        features = model.feature_extractor(samples)
        frames = min(features.shape[-1] - 1, model.feature_extractor.nb_max_frames)
        encoded = model.encode(pad_or_trim(features[:, :frames]),
                               self.config.context_s if short else 30.0)
        language = "en" if self._english_only else self.config.language
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                              task="transcribe", language=language)
        return _Window(samples, frames, len(samples) / 16_000, language, encoded,
                       _WindowDecoder(model, tokenizer, encoded))

    def _finish(self, window: _Window, first: _Pass, starts: Sequence[float]
                ) -> tuple[Transcript, float]:
        """A window's transcript from its first decoder pass (see ``transcribe_window``)."""
        model, decoder, duration = self._model, window.decoder, window.duration
        language, tokenizer = window.language, window.decoder.tokenizer
        encoded, frames = window.encoded, window.frames
        if is_silence(first.no_speech_prob, first.avg_logprob):
            return Transcript((), language, duration), duration
        if not first.reliable:
            if len(starts) > 1:
                # Several utterances heard as one unreliable stretch (identical recordings
                # packed together read as a repetition loop): none is taken from this pass;
                # the temperature fallback would sample the whole pack at random.
                return Transcript((), language, duration), 0.0
            return self.transcribe(window.samples), duration
        tokens, complete_s, boundaries = decoder.continue_over(first, starts, duration)
        segments = decoder.segments(tokens, frames, duration)
        if not segments:
            return Transcript((), language, duration), complete_s
        model.add_word_timestamps([segments], tokenizer, encoded, frames, PREPEND_PUNCTUATIONS,
                                  APPEND_PUNCTUATIONS, last_speech_timestamp=0.0)
        overlap = _first_overlap(segments, boundaries)
        if overlap is not None:
            # an earlier pass had already heard into the utterance a later pass began at:
            # keep what came before it, and leave that utterance for the next window
            at, kept = boundaries[overlap]
            tokens, complete_s = tokens[:kept], at
            segments = decoder.segments(tokens, frames, duration)
            if not segments:
                return Transcript((), language, duration), complete_s
            model.add_word_timestamps([segments], tokenizer, encoded, frames,
                                      PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS,
                                      last_speech_timestamp=0.0)
        out = _segments(segments, tokenizer, duration, first.avg_logprob, first.no_speech_prob)
        if complete_s < duration and out and out[-1].words:
            # as the seek loop does with word times: restart at the last word's end, which
            # alignment places better than the last timestamp token
            complete_s = max(0.0, min(complete_s, out[-1].words[-1].end))
        return Transcript(tuple(out), language, duration), complete_s


@dataclass(frozen=True)
class _Window:
    """One window's audio, encoded once, with the decoder that reads it."""

    samples: np.ndarray
    frames: int
    duration: float
    language: str
    encoded: Any
    decoder: _WindowDecoder


@dataclass(frozen=True)
class _Pass:
    """One greedy decoder pass over an encoded window."""

    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    reliable: bool  # neither repetitive nor improbable: what needs no temperature fallback
    repetitive: bool  # compresses too well: a repetition loop


def _segments(segments: list[dict[str, Any]], tokenizer: Any, duration: float,
              avg_logprob: float, no_speech_prob: float) -> list[Segment]:
    """faster-whisper's segment dicts (with word times added) as ours, clipped to the audio;
    empty and zero-length segments dropped."""
    out = []
    for seg in segments:
        text = tokenizer.decode(seg["tokens"]).strip()
        if says_nothing(text) or seg["start"] == seg["end"]:
            continue
        words = tuple(Word(w["start"], min(w["end"], duration), w["word"], w["probability"])
                      for w in seg.get("words", ()))
        out.append(Segment(seg["start"], min(seg["end"], duration), text, words, avg_logprob,
                           no_speech_prob))
    return out


class _WindowDecoder:
    """Greedy decoder passes over one encoded window, and the segments they make."""

    def __init__(self, model: Any, tokenizer: Any, encoded: Any,
                 previous: Sequence[int] = (), max_new_tokens: int | None = None) -> None:
        """``previous``: the prompt's tokens (text that came before); ``max_new_tokens``
        bounds a pass (a repetition loop otherwise runs to Whisper's 448 tokens)."""
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = model
        self.tokenizer = tokenizer
        self.encoded = encoded
        self.prompt = model.get_prompt(tokenizer, list(previous), without_timestamps=False)
        self.max_length = (model.max_length if max_new_tokens is None
                           else min(model.max_length, len(self.prompt) + 1 + max_new_tokens))
        self.suppress = get_suppressed_tokens(tokenizer, [-1])

    def timestamp(self, token: int) -> float:
        return float((token - self.tokenizer.timestamp_begin) * self.model.time_precision)

    def decode(self, start_s: float | None) -> _Pass:
        """A pass from the window's start, or with its first timestamp forced to ``start_s``."""
        prompt = list(self.prompt)
        forced = None
        if start_s is not None:
            forced = self.tokenizer.timestamp_begin + round(start_s / self.model.time_precision)
            prompt.append(forced)
        return self.passed(self.generate(self.encoded, [prompt])[0], forced)

    def generate(self, encoded: Any, prompts: list[list[int]]) -> list[Any]:
        """Greedy decoding of one prompt per encoded window (a batch of them)."""
        return list(self.model.model.generate(
            encoded, prompts, beam_size=1, max_length=self.max_length,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self.suppress,
            max_initial_timestamp_index=round(1.0 / self.model.time_precision)))

    def passed(self, result: Any, forced: int | None = None) -> _Pass:
        """A generation result as a pass, judged as the seek loop would judge it."""
        from faster_whisper.transcribe import get_compression_ratio

        tokens = list(result.sequences_ids[0])
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if forced is not None and (not tokens or tokens[0] != forced):
            tokens.insert(0, forced)
        text = self.tokenizer.decode([t for t in tokens if t < self.tokenizer.eot]).strip()
        repetitive = bool(text) and get_compression_ratio(text) > COMPRESSION_RATIO_LIMIT
        reliable = not repetitive and (avg_logprob >= LOGPROB_LIMIT or not text)
        return _Pass(tokens, avg_logprob, result.no_speech_prob, reliable, repetitive)

    def heard(self, tokens: Sequence[int]) -> tuple[list[int], float, bool]:
        """The tokens of the pass's finished segments, the time they end at, and whether
        the pass stopped inside speech (it left its last segment unfinished)."""
        begin = self.tokenizer.timestamp_begin
        if len(tokens) >= 2 and tokens[-2] < begin <= tokens[-1]:
            return list(tokens), self.timestamp(tokens[-1]), False
        pairs = [i for i in range(1, len(tokens)) if tokens[i] >= begin <= tokens[i - 1]]
        if pairs:
            return list(tokens[:pairs[-1]]), self.timestamp(tokens[pairs[-1] - 1]), True
        # no timestamp pair: Whisper's seek loop takes it all as one segment, window done
        stamps = [t for t in tokens if t >= begin]
        return list(tokens), self.timestamp(stamps[-1]) if stamps else 0.0, False

    def continue_over(self, first: _Pass, starts: Sequence[float], duration: float
                      ) -> tuple[list[int], float, list[tuple[float, int]]]:
        """Decodes again from each utterance start that the passes stopped at or before.

        Returns the tokens of every pass, the time up to which they are complete,
        and each continuation's start with the number of tokens before it.
        """
        begin = self.tokenizer.timestamp_begin
        tokens: list[int] = []
        boundaries: list[tuple[float, int]] = []
        current, begun = first, 0.0
        while True:
            finished, until, open_end = self.heard(current.tokens)
            following = [s for s in starts if begun + MIN_ADVANCE_S < s
                         and until - TIMESTAMP_SLACK_S <= s <= duration - MIN_ADVANCE_S]
            if (not finished or finished[-1] < begin or not following
                    or (open_end and following[0] - until > TIMESTAMP_SLACK_S)):
                if open_end:  # stopped inside an utterance: complete up to where it stopped
                    return tokens + finished, min(duration, until), boundaries
                return tokens + current.tokens, duration, boundaries
            tokens += finished
            begun = following[0]
            following_pass = self.decode(begun)
            if not following_pass.reliable:
                return tokens, begun, boundaries
            boundaries.append((begun, len(tokens)))
            current = following_pass

    def segments(self, tokens: Sequence[int], frames: int, duration: float) -> list[dict]:
        """Whisper's segments of the tokens, each with the index of its first token."""
        segments, _, _ = self.model._split_segments_by_timestamps(
            tokenizer=self.tokenizer, tokens=list(tokens), time_offset=0.0,
            segment_size=frames, segment_duration=duration, seek=0)
        at = 0
        for segment in segments:
            segment["first_token"] = at
            at += len(segment["tokens"])
        return [s for s in segments if any(t < self.tokenizer.eot for t in s["tokens"])]


def _first_passes(decoders: Sequence[_WindowDecoder]) -> list[_Pass]:
    """The first pass over each of several windows of the same shape, in one batch."""
    import ctranslate2

    if len(decoders) == 1 or decoders[0].encoded.device != "cpu":
        # (on a GPU the outputs would be stacked through host memory: decoded one by one)
        return [decoder.decode(None) for decoder in decoders]
    batch = ctranslate2.StorageView.from_array(
        np.concatenate([np.asarray(d.encoded) for d in decoders]))
    results = decoders[0].generate(batch, [list(d.prompt) for d in decoders])
    return [decoder.passed(result) for decoder, result in zip(decoders, results, strict=True)]


def _first_overlap(segments: Sequence[dict], boundaries: Sequence[tuple[float, int]]
                   ) -> int | None:
    """The first continuation into whose utterance an earlier pass had already heard."""
    for index, (at, before) in enumerate(boundaries):
        if any((w["start"] + w["end"]) / 2 > at + TIMESTAMP_SLACK_S
               for s in segments if s["first_token"] < before for w in s.get("words", ())):
            return index
    return None
