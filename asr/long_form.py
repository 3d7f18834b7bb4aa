"""A recording heard alone: a block of one channel, decoded in short pieces cut at its pauses.

Batch transcription hears every recording this way by default, a channel and
a few minutes at a time (``asr.batch``).

Only the speech is heard: the voice activity detector's regions follow one
another in their own order with at most ``LONG_SILENCE_S`` of silence between
them (silence costs nothing and cannot turn into words), and each word's time
is mapped back to the block's clock.

That stream is cut at the pauses between utterances into pieces of at most
``PIECE_S``. Whisper's encoder then looks at each piece plus 2 s, at least
``asr.context_s`` (15 s: ``asr/encoder_context.py``), instead of 30 s: a
15-s window costs about a quarter of a 30-s one on one thread (its attention
is quadratic), and on the dev recordings it hears the same words. Each piece
is one encoder pass (``transcribe_window``); what the decoder leaves, where
it stops early, is decoded from there. A backend with several single-threaded
model workers (``replicas``) decodes that many pieces at once, longest first,
so one recording keeps every core busy to its end, and a worker takes two
pieces at a time while enough are left, their first decoder passes in one
batch. Whisper's own seek loop over the whole stream, which this replaced for
long recordings, took 1.45 times as long on the joined dev recordings, for a
higher WER (``benchmarks/README.md``). A backend that cannot decode a window
on its own (openai-whisper, transformers) still gets the seek loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from asr.audio import SPEECH_RATE, Audio
from asr.transcriber import Transcriber, WindowTranscriber
from asr.transcript import Segment, Transcript, Word
from voice.vad import SpeechSpan, split_turns
from voicedesk.config import VadConfig

MERGE_GAP_S = 2.0  # speech closer than this is transcribed together, for context
REGION_PAD_S = 0.3  # lead-in beyond the endpointer's padding: without it Whisper can clip a word
LONG_SILENCE_S = 1.0  # longer silence between speech regions is shortened to this
# A piece's audio at most: with the encoder's 2-s margin it fills the 15-s window. Longer
# pieces (20 s, 28 s) were no faster and lost words (benchmarks/README.md).
PIECE_S = 13.0
# Where a pass stops less than this before a piece's end, the rest counts as heard (as the
# trailing silence it almost always is); a pass that gets less far than this is not trusted.
MIN_REST_S = 1.0
# Pieces whose first passes one lane decodes together (while enough are left for every lane).
BATCH = 2


def speech_regions(audio: Audio, vad_config: VadConfig, gap_s: float = MERGE_GAP_S,
                   pad_s: float = REGION_PAD_S,
                   turns: Sequence[SpeechSpan] | None = None) -> list[tuple[float, float]]:
    """Stretches of speech in a chunk, padded, neighbours closer than ``gap_s`` joined
    (``turns``: the chunk's ``split_turns``, where the caller has them already)."""
    regions: list[tuple[float, float]] = []
    for span in split_turns(audio, vad_config) if turns is None else turns:
        start, end = max(0.0, span.start - pad_s), min(audio.duration, span.end + pad_s)
        if regions and start - regions[-1][1] < gap_s:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    return regions


@dataclass(frozen=True)
class _Span:
    at: float  # seconds into the decoded stream
    source: float  # seconds into the block
    length: float


@dataclass(frozen=True)
class _Block:
    """A block's speech as Whisper hears it: its regions one after another."""

    duration: float  # of the block
    turns: Sequence[SpeechSpan]
    spans: list[_Span]  # where each region lies in the stream; none: no speech
    stream: np.ndarray

    def silent(self) -> Transcript:
        return Transcript((), "", self.duration)

    def cut(self, piece_s: float) -> list[tuple[float, np.ndarray]]:
        """The stream cut at the pauses between utterances: each piece and its start."""
        if not self.spans:
            return []
        utterances = [(_forward(self.spans, max(0.0, t.start - REGION_PAD_S)),
                       _forward(self.spans, t.end)) for t in self.turns]
        bounds = cut_at_pauses(utterances, len(self.stream) / SPEECH_RATE, piece_s)
        return [(a, self.stream[round(a * SPEECH_RATE):round(b * SPEECH_RATE)])
                for a, b in zip(bounds, bounds[1:], strict=False)]

    def mapped(self, heard: Transcript) -> Transcript:
        """The stream's transcript on the block's clock, each word inside its speech."""
        segments = []
        for seg in heard.segments:
            words = tuple(_in_speech(Word(_back(self.spans, w.start), _back(self.spans, w.end),
                                          w.text, w.probability), self.turns)
                          for w in seg.words)
            start = words[0].start if words else _back(self.spans, seg.start)
            end = words[-1].end if words else _back(self.spans, seg.end)
            segments.append(Segment(start, max(start, end), seg.text, words, seg.avg_logprob,
                                    seg.no_speech_prob))
        return Transcript(tuple(segments), heard.language, self.duration)


class LongFormDecoder:
    """A recording's block: its speech, silences shortened, decoded piece by piece."""

    def __init__(self, transcriber: Transcriber, vad_config: VadConfig,
                 silence_s: float = LONG_SILENCE_S, piece_s: float = PIECE_S) -> None:
        self.transcriber = transcriber
        self.vad_config = vad_config
        self.silence_s = silence_s
        self.piece_s = piece_s
        # a backend serving several calls at once decodes that many pieces at once
        self.lanes = max(1, int(getattr(transcriber, "replicas", 1)))

    def decode(self, samples: np.ndarray) -> Transcript:
        """The block's transcript, on the block's clock."""
        return self.decode_all([samples])[0]

    def decode_all(self, blocks: Sequence[np.ndarray]) -> list[Transcript]:
        """Several blocks (the channels of a call), their pieces decoded together: no lane
        waits at the end of one channel while pieces of the other are left."""
        heard_as = [self._speech(samples) for samples in blocks]
        windows = isinstance(self.transcriber, WindowTranscriber) and bool(
            getattr(self.transcriber, "one_language", False))
        if not windows:  # Whisper's seek loop over each block's stream, any length
            return [speech.mapped(self.transcriber.transcribe(speech.stream)) if speech.spans
                    else speech.silent() for speech in heard_as]
        cuts = [speech.cut(self.piece_s) for speech in heard_as]
        heard = iter(self._decode([piece for pieces in cuts for _, piece in pieces]))
        return [speech.mapped(_joined([(at, next(heard)) for at, _ in pieces], speech.duration))
                if speech.spans else speech.silent()
                for speech, pieces in zip(heard_as, cuts, strict=True)]

    def _speech(self, samples: np.ndarray) -> _Block:
        """The block's speech, silences shortened (nothing where it has none)."""
        audio = Audio(samples, SPEECH_RATE)
        turns = split_turns(audio, self.vad_config)
        regions = speech_regions(audio, self.vad_config, turns=turns)
        if not regions:
            return _Block(audio.duration, turns, [], np.zeros(0, np.float32))
        stream, spans = self._stream(audio, regions)
        return _Block(audio.duration, turns, spans, stream)

    def _stream(self, audio: Audio, regions: list[tuple[float, float]]
                ) -> tuple[np.ndarray, list[_Span]]:
        """The regions one after another, silences between them shortened; where each lies."""
        # A short lead-in or tail is kept as it is: a recording without long silences is
        # heard as it is in the file.
        if regions[0][0] <= self.silence_s:
            regions[0] = (0.0, regions[0][1])
        if audio.duration - regions[-1][1] <= self.silence_s:
            regions[-1] = (regions[-1][0], audio.duration)
        parts: list[np.ndarray] = []
        spans: list[_Span] = []
        at = 0.0
        for start, end in regions:
            if spans:
                gap = min(self.silence_s, start - (spans[-1].source + spans[-1].length))
                parts.append(np.zeros(round(gap * SPEECH_RATE), np.float32))
                at += len(parts[-1]) / SPEECH_RATE
            part = audio.slice(start, end)
            spans.append(_Span(at, start, len(part) / SPEECH_RATE))
            parts.append(part.astype(np.float32, copy=False))
            at += len(part) / SPEECH_RATE
        return np.concatenate(parts), spans

    def _decode(self, pieces: Sequence[np.ndarray]) -> list[Transcript]:
        """Pieces decoded ``lanes`` at a time, longest first, two to a lane while enough
        are left to keep every lane busy (``BATCH``), one at a time at the end.

        Longest first: the last to finish is then a short one, and no lane waits long
        for the other (1.59 s against 1.75 s on the joined dev recordings). Two to a
        lane: the decoder reads its weights once a step for both (about 0.8 times the
        time; benchmarks/README.md)."""
        if not pieces:
            return []
        order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
        groups: list[list[int]] = []
        while order:
            size = BATCH if len(order) >= BATCH * self.lanes else 1
            groups.append(order[:size])
            order = order[size:]
        heard: list[Transcript | None] = [None] * len(pieces)
        with ThreadPoolExecutor(min(self.lanes, len(groups))) as pool:
            futures = [(group, pool.submit(self._group, [pieces[i] for i in group]))
                       for group in groups]
            for group, future in futures:
                for i, transcript in zip(group, future.result(), strict=True):
                    heard[i] = transcript
        return [transcript for transcript in heard if transcript is not None]

    def _group(self, pieces: list[np.ndarray]) -> list[Transcript]:
        """Pieces whose first passes are decoded together; what each leaves, alone."""
        window = self.transcriber
        assert isinstance(window, WindowTranscriber)
        return [self._completed(samples, *first) for samples, first
                in zip(pieces, window.transcribe_windows(pieces, short=True), strict=True)]

    def _completed(self, samples: np.ndarray, heard: Transcript, complete: float) -> Transcript:
        """One piece from its first pass: what the decoder left, where it stopped early,
        is decoded again from there; what no pass finishes goes through Whisper's seek
        loop.

        The decoder is not restarted at the next utterance on the same encoder output,
        as packed windows are (``transcribe_window``'s ``starts``): over the short window
        Whisper's timestamps can run ahead of the speech, and a restart then heard two
        utterances twice (11 words inserted in one call). Without it the pieces took as
        long and the WER was lower (6.88 % against 8.06 % on six two-channel calls)."""
        window = self.transcriber
        assert isinstance(window, WindowTranscriber)
        duration = len(samples) / SPEECH_RATE
        segments: list[Segment] = []
        language = ""
        done = 0.0
        while True:
            if complete < MIN_REST_S:  # nothing whole (an unreliable pass): the seek loop
                rest = samples[round(done * SPEECH_RATE):]
                heard, complete = self.transcriber.transcribe(rest), duration - done
            segments.extend(_shifted(seg, done) for seg in heard.segments)
            language = language or (heard.language if heard.segments else "")
            done += complete
            if duration - done < MIN_REST_S:
                return Transcript(tuple(segments), language, duration)
            heard, complete = window.transcribe_window(samples[round(done * SPEECH_RATE):],
                                                       short=True)


def cut_at_pauses(utterances: Sequence[tuple[float, float]], duration: float,
                  longest_s: float) -> list[float]:
    """Bounds of consecutive pieces covering ``[0, duration]``, each cut in the middle of
    a pause between utterances and at most ``longest_s`` long where the pauses allow
    (an utterance longer than that is a piece of its own)."""
    pauses = [(a_end + b_start) / 2 for (_, a_end), (b_start, _)
              in zip(utterances, utterances[1:], strict=False) if b_start > a_end]
    bounds = [0.0]
    for k, pause in enumerate(pauses):
        following = pauses[k + 1] if k + 1 < len(pauses) else duration
        if following - bounds[-1] > longest_s and pause > bounds[-1]:
            bounds.append(pause)
    return [*bounds, duration]


def _joined(pieces: Sequence[tuple[float, Transcript]], duration: float) -> Transcript:
    """The pieces' transcripts, each shifted to where its piece starts, as one."""
    segments = [_shifted(seg, at) for at, heard in pieces for seg in heard.segments]
    language = next((heard.language for _, heard in pieces if heard.segments),
                    pieces[0][1].language if pieces else "")
    return Transcript(tuple(segments), language, duration)


def _in_speech(word: Word, turns: Sequence[SpeechSpan]) -> Word:
    """The word moved inside the speech it was heard in (the last turn that begins before
    it ends): alignment stretches a first word back to the start of the silence before it
    (0.0 for speech 0.5 s into a call) and draws a last one into the silence after it."""
    turn = next((t for t in reversed(turns) if t.start <= word.end), None)
    if turn is None or turn.start <= word.start and word.end <= turn.end:
        return word
    end = min(word.end, turn.end)
    return Word(min(max(word.start, turn.start), end), end, word.text, word.probability)


def _shifted(segment: Segment, offset: float) -> Segment:
    words = tuple(Word(w.start + offset, w.end + offset, w.text, w.probability)
                  for w in segment.words)
    return Segment(segment.start + offset, segment.end + offset, segment.text, words,
                   segment.avg_logprob, segment.no_speech_prob)


def _forward(spans: Sequence[_Span], t: float) -> float:
    """A time on the block's clock in the decoded stream (in a dropped silence: the end
    of the speech before it)."""
    index = max(0, next((i for i, s in enumerate(spans) if s.source > t), len(spans)) - 1)
    span = spans[index]
    return span.at + min(max(t - span.source, 0.0), span.length)


def _back(spans: Sequence[_Span], t: float) -> float:
    """A time in the decoded stream on the block's clock; in a shortened silence, the
    nearer edge of the speech around it."""
    index = max(0, next((i for i, s in enumerate(spans) if s.at > t), len(spans)) - 1)
    span = spans[index]
    if t <= span.at + span.length or index + 1 == len(spans):
        return span.source + min(max(t - span.at, 0.0), span.length)
    after = spans[index + 1]
    return (span.source + span.length if t - span.at - span.length < after.at - t
            else after.source)
