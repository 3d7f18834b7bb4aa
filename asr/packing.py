"""Several short stretches of speech in one 30-s Whisper window, and their words sent back.

Whisper always encodes 30 s of audio, however short the input: a batch of
3-s recordings spends most of its time encoding padding. Packing the speech
of several recordings (or several regions of one) into one window, half a
second of silence between them, lets one encoder pass serve them all; each
decoded word then goes back to the piece it was spoken in, by its time, and
each piece gets a transcript on its own clock, as if decoded alone.

Whisper can still blur the seams, so a piece whose words are in doubt is
decoded again on its own (the per-file path): packing may cost time, but a
word is kept only where its piece is clear. A piece is in doubt when

* a word lies in the middle of a gap, between two pieces a segment spans
  (a segment's closing word drawn into the silence after it is its piece's);
* its words are improbable (mean probability under 0.5): noise that Whisper
  turned into words next to speech; alone, Whisper's no-speech rule drops it;
* its words span less than half of it, or it has none: Whisper skipped it,
  and may have stretched a neighbour's words over it; so every piece that
  shares a Whisper segment with a piece in doubt is in doubt too.

Whisper often stops after the first of the packed pieces; the backend then
decodes again from the next piece's start on the same encoder output
(``WindowTranscriber``). A window it stops short of inside a piece (it thinks
the utterance runs on) keeps what it finished, cut at its last segment
boundary; the rest starts the next window, instead of costing a second
encoder pass as Whisper's seek loop would.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from asr.audio import SPEECH_RATE
from asr.transcriber import Transcriber, WindowTranscriber
from asr.transcript import Segment, Transcript, Word

WINDOW_S = 28.0  # packed content per window: below 30 s so the last words are heard whole
GAP_S = 0.5  # silence between pieces: Whisper ends a segment there (1 s: no better, measured)
# A word's middle may stray this share of the gap past a piece's edge (alignment error)
# and still be the piece's; a word in the middle of a gap is nobody's.
EDGE_TOLERANCE = 0.4
# A piece whose words' mean probability is lower than this is decoded alone: speech that
# Whisper hears clearly scores 0.7-0.95; noise that it turns into words scores far lower.
MIN_PIECE_PROBABILITY = 0.5
# A piece whose words span less than this share of it is decoded alone: Whisper skipped some
# of it (and may have stretched a neighbour's words over it), or heard only noise.
MIN_COVERAGE = 0.5
# A piece is cut where Whisper stopped only if both parts are at least this long; a shorter
# head waits whole for the next window, a shorter tail counts as heard.
MIN_PART_S = 1.0
WINDOW_SAMPLES = 30 * SPEECH_RATE


@dataclass(frozen=True)
class Piece:
    """A stretch of 16 kHz mono speech, and whose it is."""

    owner: Hashable  # e.g. (recording, channel): where its words go back to
    start: float  # seconds on the owner's clock
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / SPEECH_RATE


@dataclass(frozen=True)
class Placement:
    piece: Piece
    offset: float  # seconds from the start of the window


@dataclass(frozen=True)
class Window:
    placements: tuple[Placement, ...]
    samples: np.ndarray




def _owners(words: Sequence[Word], placements: Sequence[Placement],
            tolerance: float) -> list[int | None]:
    """The placement each word was spoken in, None for a word whose middle lies in a gap."""
    owners: list[int | None] = []
    for word in words:
        middle = (word.start + word.end) / 2
        owners.append(next((i for i, p in enumerate(placements)
                            if p.offset - tolerance <= middle
                            <= p.offset + p.piece.duration + tolerance), None))
    return owners


def _settle(owners: list[int | None], doubtful: set[int], count: int) -> None:
    """Gives a word in a gap to its segment's piece, or puts the pieces around it in doubt.

    Alignment often puts a segment's last word at the segment's closing
    timestamp, a little into the silence after it: when every other word of
    the segment is in the piece next to the gap, the word is that piece's.
    Otherwise the pieces on both sides of the gap are decoded again alone.
    """
    placed = {o for o in owners if o is not None}
    for i, owner in enumerate(owners):
        if owner is not None:
            continue
        before = next((o for o in reversed(owners[:i]) if o is not None), None)
        after = next((o for o in owners[i + 1:] if o is not None), None)
        if len(placed) == 1:
            owners[i] = next(iter(placed))
        elif before is not None and after is not None:
            doubtful |= set(range(before, after + 1))
        else:
            doubtful |= set(range(count))


def split_window(placements: Sequence[Placement], transcript: Transcript, gap_s: float = GAP_S
                 ) -> tuple[list[Transcript], set[int]]:
    """Each piece's transcript on its own clock, and the pieces whose words are in doubt.

    A Whisper segment that runs over a gap is cut there: the words on each
    side become a segment of their own piece, keeping the segment's scores.
    """
    segments: list[list[Segment]] = [[] for _ in placements]
    doubtful: set[int] = set()
    shared: list[set[int]] = []  # the pieces each Whisper segment's words went to
    for segment in transcript.segments:
        if not segment.words:
            if segment.text.strip():  # text without times: nothing to place it by
                doubtful |= {i for i, p in enumerate(placements)
                             if p.offset < segment.end and segment.start
                             < p.offset + p.piece.duration} or set(range(len(placements)))
            continue
        owners = _owners(segment.words, placements, EDGE_TOLERANCE * gap_s)
        _settle(owners, doubtful, len(placements))
        shared.append({o for o in owners if o is not None})
        runs: list[tuple[int, list[Word]]] = []
        for word, owner in zip(segment.words, owners, strict=True):
            if owner is None:
                continue
            if runs and runs[-1][0] == owner:
                runs[-1][1].append(word)
            else:
                runs.append((owner, [word]))
        for index, words in runs:
            offset, duration = placements[index].offset, placements[index].piece.duration

            def local(t: float, offset: float = offset, duration: float = duration) -> float:
                return min(max(t - offset, 0.0), duration)

            moved = tuple(Word(local(w.start), local(w.end), w.text, w.probability)
                          for w in words)
            text = "".join(w.text for w in words).strip()
            if text:
                segments[index].append(Segment(moved[0].start, moved[-1].end, text, moved,
                                               segment.avg_logprob, segment.no_speech_prob))
    for i, (found, placement) in enumerate(zip(segments, placements, strict=True)):
        if _improbable(found) or _coverage(found) < MIN_COVERAGE * placement.piece.duration:
            doubtful.add(i)
    return ([Transcript(tuple(s), transcript.language, p.piece.duration)
             for s, p in zip(segments, placements, strict=True)],
            _spread(doubtful, shared))


def _improbable(segments: Sequence[Segment]) -> bool:
    words = [w for s in segments for w in s.words]
    return bool(words) and sum(w.probability for w in words) / len(words) < MIN_PIECE_PROBABILITY


def _coverage(segments: Sequence[Segment]) -> float:
    """Seconds of the piece from its first word's start to its last word's end.

    Not the sum of word lengths: alignment gives short words (digits, "of")
    a few hundredths of a second, and a clearly heard "ten of clubs" would
    look mostly unheard.
    """
    words = [w for s in segments for w in s.words]
    if not words:
        return 0.0
    return max(w.end for w in words) - min(w.start for w in words)


def _spread(doubtful: set[int], shared: list[set[int]]) -> set[int]:
    """Doubt passes to every piece that shares a Whisper segment with a doubted one:
    if Whisper skipped a piece, the words it then stretched over it belong next door."""
    grown = set(doubtful)
    changed = True
    while changed:
        changed = False
        for group in shared:
            if group & grown and not group <= grown:
                grown |= group
                changed = True
    return grown


Decoded = tuple[Piece, Transcript]


@dataclass(frozen=True)
class _Pass:
    """A packed window as the backend heard it: complete up to ``complete_s``."""

    window: Window
    transcript: Transcript
    complete_s: float


class PackedDecoder:
    """Decodes pieces in the order they come, several to a window; memory is ``lanes``
    windows.

    ``add`` returns the pieces a full window has finished, ``flush`` the
    rest. When Whisper stops before the end of a window (it thinks the last
    utterance runs past it), the rest of the piece it stopped in, and the
    pieces after it, start the next window instead of costing an encoder pass
    of their own; a piece may so come back in parts, on its owner's clock.

    With ``lanes`` > 1 (a backend with as many single-threaded model workers:
    ``replicas``) that many windows are decoded at once; the rest of a window
    Whisper stops short of then starts the next window still to be filled,
    which may be decoded after one that follows it in the recording. Each
    piece's words stay on its owner's clock, so the order of decoding does not
    show in the transcript. A window is settled only when a lane is needed or at
    ``flush``, never because it happened to finish first: which pieces share a
    window, and so the text, depends on the pieces and the lanes, not on timing.
    """

    def __init__(self, transcriber: Transcriber, window_s: float = WINDOW_S,
                 gap_s: float = GAP_S, lanes: int = 1) -> None:
        self.transcriber = transcriber
        self.window_s = window_s
        self.gap_s = gap_s
        self.lanes = max(1, lanes)
        self._queue: deque[Piece] = deque()
        self._retried: set[int] = set()  # pieces already back once from a window in doubt
        self._running: deque[Future[_Pass]] = deque()
        self._pool = ThreadPoolExecutor(self.lanes) if self.lanes > 1 else None
        self.windows = 0  # encoder windows decoded, for the record
        self.alone = 0  # pieces decoded on their own after a packed pass left them in doubt

    def add(self, piece: Piece) -> list[Decoded]:
        if len(piece.samples) == 0:
            return []
        self._queue.append(piece)
        done: list[Decoded] = []
        while True:
            if self._pool is None and self._running:  # one lane: decoded as it launched
                done += self._settle(self._running.popleft().result())
            elif self._span(self._queue) < self.window_s:
                return done
            elif len(self._running) >= self.lanes:  # every lane busy: wait for the oldest
                done += self._settle(self._running.popleft().result())
            else:
                self._launch()

    def flush(self) -> list[Decoded]:
        done: list[Decoded] = []
        while self._queue or self._running:
            if self._pool is None and self._running:
                done += self._settle(self._running.popleft().result())
            elif self._queue and len(self._running) < self.lanes:
                self._launch()
            else:
                done += self._settle(self._running.popleft().result())
        return done

    def close(self) -> None:
        """Stops the lanes' threads (after ``flush``, or on an error: windows still being
        decoded finish and are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._running.clear()

    def _span(self, pieces: Sequence[Piece]) -> float:
        return sum(p.duration for p in pieces) + self.gap_s * max(0, len(pieces) - 1)

    def _launch(self) -> None:
        taken = [self._queue.popleft()]
        while self._queue and self._span([*taken, self._queue[0]]) <= self.window_s:
            taken.append(self._queue.popleft())
        self.windows += 1
        self._start(self._pass, pack(taken, self.gap_s))

    def _start(self, decode: Callable[[Window], _Pass], window: Window) -> None:
        """``decode(window)`` on a free lane (here and now with one lane)."""
        future: Future[_Pass]
        if self._pool is None:
            future = Future()
            future.set_result(decode(window))
        else:
            future = self._pool.submit(decode, window)
        self._running.append(future)

    def _alone(self, window: Window) -> _Pass:
        """One piece in doubt, decoded on its own as the per-file path would."""
        return _Pass(window, self.transcriber.transcribe(window.samples), math.inf)

    def _pass(self, window: Window) -> _Pass:
        if len(window.samples) > WINDOW_SAMPLES or not isinstance(self.transcriber,
                                                                  WindowTranscriber):
            # Whisper's seek loop finishes any length, at its own cost
            return _Pass(window, self.transcriber.transcribe(window.samples), math.inf)
        transcript, complete_s = self.transcriber.transcribe_window(
            window.samples, [p.offset for p in window.placements])
        return _Pass(window, transcript, complete_s)

    def _settle(self, decoded: _Pass) -> list[Decoded]:
        window, transcript, complete_s = decoded.window, decoded.transcript, decoded.complete_s
        kept, rest = self._cut(window.placements, complete_s)
        if not kept and len(window.placements) > 1:
            # nothing whole in a pass over several pieces (one unreliable stretch): each
            # piece alone, as the per-file path would, not a seek loop over the pack
            for placement in window.placements:
                self.alone += 1
                self._start(self._alone, pack([placement.piece], self.gap_s))
            return []
        if not kept:  # nothing whole of one piece: let Whisper's seek loop finish it
            kept, rest = list(window.placements), []
            transcript = self.transcriber.transcribe(window.samples)
        self._queue.extendleft(reversed(rest))
        if len(window.placements) == 1:
            return [(kept[0].piece, transcript)]
        if rest:  # words of the pieces left for the next window are heard there
            last = kept[-1]
            transcript = _until(transcript, last.offset + last.piece.duration
                                + EDGE_TOLERANCE * self.gap_s)
        split, doubtful = split_window(kept, transcript, self.gap_s)
        done = []
        retry = []
        for i, (placement, heard) in enumerate(zip(kept, split, strict=True)):
            piece = placement.piece
            if i not in doubtful:
                done.append((piece, heard))
            elif id(piece) in self._retried or len(kept) == len(doubtful):
                self.alone += 1
                self._start(self._alone, pack([piece], self.gap_s))
            else:
                retry.append(piece)
                continue
            self._retried.discard(id(piece))
        # Most doubt comes from the neighbours (one utterance read as context for the next):
        # the pieces get one more packed window, with other neighbours, before a pass alone.
        self._retried |= {id(p) for p in retry}
        self._queue.extendleft(reversed(retry))
        return done

    def _cut(self, placements: Sequence[Placement], complete_s: float
             ) -> tuple[list[Placement], list[Piece]]:
        """The placements a pass finished, and the pieces (or ends of pieces) left for the
        next window: a piece Whisper stopped in is cut where it stopped, at a segment
        boundary, as Whisper's own seek loop would restart there."""
        kept: list[Placement] = []
        rest: list[Piece] = []
        slack = EDGE_TOLERANCE * self.gap_s
        for placement in placements:
            piece, offset = placement.piece, placement.offset
            if rest or offset + MIN_PART_S > complete_s:
                rest.append(piece)
            elif offset + piece.duration <= complete_s + max(slack, MIN_PART_S):
                kept.append(placement)
            else:
                cut = round((complete_s - offset) * SPEECH_RATE)
                kept.append(Placement(Piece(piece.owner, piece.start, piece.samples[:cut]),
                                      offset))
                rest.append(Piece(piece.owner, piece.start + cut / SPEECH_RATE,
                                  piece.samples[cut:]))
        return kept, rest


def _until(transcript: Transcript, limit: float) -> Transcript:
    """The transcript without the words whose middle is past ``limit``."""
    segments = []
    for segment in transcript.segments:
        words = tuple(w for w in segment.words if (w.start + w.end) / 2 <= limit)
        if words:
            segments.append(Segment(segment.start, min(segment.end, words[-1].end),
                                    "".join(w.text for w in words).strip(), words,
                                    segment.avg_logprob, segment.no_speech_prob))
        elif not segment.words and segment.start < limit:
            segments.append(segment)
    return Transcript(tuple(segments), transcript.language, transcript.duration)


def pack(pieces: Sequence[Piece], gap_s: float = GAP_S) -> Window:
    """The pieces one after another, ``gap_s`` of silence between them."""
    gap = np.zeros(round(gap_s * SPEECH_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    placements = []
    at = 0
    for piece in pieces:
        if parts:
            parts.append(gap)
            at += len(gap)
        placements.append(Placement(piece, at / SPEECH_RATE))
        parts.append(piece.samples.astype(np.float32, copy=False))
        at += len(piece.samples)
    return Window(tuple(placements), np.concatenate(parts))
