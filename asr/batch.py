"""Batch transcription of recorded calls: many files, hour-long files, resumable.

A recording is streamed from disk in blocks and each channel is cut into
windows of at most 30 s (Whisper's input) at pauses, so memory stays bounded
however long the call. Whisper only hears the stretches the voice activity
detector calls speech: a silent channel costs nothing, and silence or line
noise cannot be turned into invented words.

Each recording is heard alone, channel by channel (``asr.long_form``): its
speech, long silences shortened, is cut at its pauses into pieces of about
13 s, and each piece is one pass of Whisper's encoder over the piece plus
2 s, at least 15 s (``asr.context_s``), instead of Whisper's 30 s. A long
recording is read in blocks of a few minutes, cut at a pause, so memory stays
bounded. A worker with several threads holds as many single-threaded model
workers and decodes that many pieces at once. The files are cut into runs of
neighbours (``plan_groups``) spread over worker processes (or Ray actors with
``--ray``), each loading the models once, one thread each by default
(``plan_workers``). A file's text depends only on the file, never on the
files beside it: a rerun, a Ray batch and a local batch give the same text.

``asr.pack`` packs the speech regions of several short files into shared
30-s windows instead (``asr.packing``), each word sent back to its file by
its time: about 10 % faster on many short files, but Whisper hears each
window as one stretch of audio, so a file's words change with its neighbours
(on the dev files 3.8 % WER in one order, 5.5 % pooled over five, against
5.2 % heard alone; ``benchmarks/README.md``). A long mono recording is then
still heard alone; a two-channel call is packed turn by turn.

Results are appended to ``transcripts.jsonl`` as each file finishes; that
file is also the ledger a rerun reads to skip files already done (same path,
size and modification time, same ASR model). A file that cannot be read is
written to ``errors.jsonl`` with a one-line reason and the batch carries on.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import logging
import math
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asr.audio import SPEECH_RATE, Audio
from asr.formats import RENDERERS, CallTranscript, SpeakerSegment, SpokenWord
from asr.long_form import LongFormDecoder, speech_regions
from asr.packing import PackedDecoder, Piece
from asr.telephony import CallRecording, speaker_labels
from asr.transcriber import Transcriber
from asr.transcript import Transcript
from voice.vad import VoiceActivityDetector, create_vad
from voicedesk.config import Config, VadConfig
from voicedesk.errors import VoicedeskError

if TYPE_CHECKING:
    from nlu.understanding import IntentRecognizer

MAX_CHUNK_S = 30.0  # Whisper's window: longer input is cut blindly by the model itself
MIN_CUT_S = 10.0  # a forced cut looks for a pause only past this point, so chunks stay long
# A worker takes files in groups of about this much audio (packed, they share windows), so
# its results come back every few minutes and a crash loses little.
GROUP_AUDIO_S = 300.0
# With ``asr.pack``, a mono recording longer than this is still heard alone, in short pieces
# (``LongFormDecoder``): packing gains nothing once a recording fills windows by itself, and
# packed 30-s windows of one speaker's talk lost words (6.66 % WER against 5.47 % for the
# seek loop this then had, on the joined dev recordings).
LONG_FORM_S = 60.0
LONG_BLOCK_S = 300.0  # a recording heard alone is read and decoded in blocks this long
LONG_MIN_BLOCK_S = 240.0  # a block is cut at a pause past this point
MAX_DEFAULT_WORKERS = 8  # more cores than this: more threads per worker, not more models
LEDGER = "transcripts.jsonl"
ERRORS = "errors.jsonl"
Outcome = dict[str, Any]  # {"path": ..., "record": {...}} or {"path": ..., "error": "..."}


# ---- cutting long audio ---------------------------------------------------------------------

@dataclass(frozen=True)
class Chunk:
    start: float  # seconds from the start of the recording
    samples: np.ndarray  # 16 kHz mono


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class PauseChunker:
    """Cuts an endless 16 kHz stream into windows of at most ``max_s``, at pauses.

    A window is cut only when the buffer is full; the cut goes in the middle of
    the latest clear pause (webrtcvad non-speech of about half a second, or the
    longest there is) past ``min_s``, or at the quietest moment if the speaker
    never pauses. Memory is one window plus one incoming block.
    """

    PAUSE_S = 0.5

    def __init__(self, vad: VoiceActivityDetector, max_s: float = MAX_CHUNK_S,
                 min_s: float = MIN_CUT_S, rate: int = SPEECH_RATE) -> None:
        self.vad = vad
        self.rate = rate
        self.max_len = int(max_s * rate)
        self.min_len = int(min_s * rate)
        self._pending: list[np.ndarray] = []
        self._size = 0
        self._offset = 0  # sample index of the first pending sample

    def push(self, samples: np.ndarray) -> list[Chunk]:
        self._pending.append(np.asarray(samples, dtype=np.float32))
        self._size += len(samples)
        chunks = []
        while self._size >= self.max_len:
            buffer = self._join()
            cut = self._cut_point(buffer[: self.max_len])
            chunks.append(Chunk(self._offset / self.rate, buffer[:cut]))
            self._pending, self._size = [buffer[cut:]], len(buffer) - cut
            self._offset += cut
        return chunks

    def flush(self) -> list[Chunk]:
        if not self._size:
            return []
        chunk = Chunk(self._offset / self.rate, self._join())
        self._offset += self._size
        self._pending, self._size = [], 0
        return [chunk]

    def _join(self) -> np.ndarray:
        if len(self._pending) > 1:
            self._pending = [np.concatenate(self._pending)]
        return self._pending[0]

    def _cut_point(self, window: np.ndarray) -> int:
        frame = self.rate * self.vad.frame_ms // 1000
        first, count = self.min_len // frame, len(window) // frame
        frames = window[first * frame: count * frame].reshape(-1, frame)
        quiet = np.array([not self.vad.is_speech(f, self.rate) for f in frames])
        runs = _runs(quiet)
        if runs:
            enough = min(max(length for _, length in runs), round(self.PAUSE_S * 1000 /
                                                                   self.vad.frame_ms))
            start, length = [r for r in runs if r[1] >= enough][-1]
            return (first + start + length // 2) * frame
        energy = np.convolve(np.square(frames).mean(axis=1), np.ones(5) / 5, mode="same")
        return (first + int(np.argmin(energy))) * frame + frame // 2


def _speaker_segments(piece: Piece, transcript: Transcript, speaker: str,
                      channel: int) -> list[SpeakerSegment]:
    """A piece's transcript as segments on the recording's clock, never past the piece."""
    offset, limit = piece.start, piece.start + piece.duration
    segments = []
    for seg in transcript.segments:
        text = seg.text.strip()
        if not text:
            continue
        words = tuple(SpokenWord(min(offset + w.start, limit), min(offset + w.end, limit),
                                 w.text.strip(), w.probability) for w in seg.words)
        seg_start = min(offset + seg.start, limit)
        segments.append(SpeakerSegment(seg_start, max(seg_start, min(offset + seg.end, limit)),
                                       text, speaker, channel, words))
    return segments


def _split_at_turns(segments: list[SpeakerSegment]) -> list[SpeakerSegment]:
    """Each segment cut where another channel's segment begins inside it.

    One side's speech a second or two apart is decoded together, for context,
    and alignment stretches the last word before a pause over it; on a two-sided
    call the other side's turn may lie in that pause ("Five, five." at 43.2 s
    between the agent's turns at 40.8 and 45.3 s). Cut there, at a word boundary,
    the conversation reads in time order.
    """
    out: list[SpeakerSegment] = []
    for segment in segments:
        cuts = sorted(o.start for o in segments if o.channel != segment.channel
                      and segment.start < o.start < segment.end)
        parts: list[list[SpokenWord]] = [[]]
        bounds: list[float] = []  # where each part but the last must end: the other's start
        for word in segment.words:
            while cuts and word.start >= cuts[0]:
                cut = cuts.pop(0)
                if parts[-1]:
                    parts.append([])
                    bounds.append(cut)
            parts[-1].append(word)
        if len(parts) < 2:
            out.append(segment)
            continue
        for words, bound in zip(parts, [*bounds, math.inf], strict=True):
            # the last word before a pause is stretched over it: end it where the other
            # side began
            last = min(words[-1].end, bound)
            out.append(replace(segment, start=words[0].start, end=max(words[0].start, last),
                               text=" ".join(w.word for w in words), words=tuple(
                                   replace(w, end=max(w.start, min(w.end, bound)))
                                   for w in words)))
    return out


class _OpenRecording:
    """One recording on its way through the decoder: what is back, and how much is out."""

    def __init__(self, index: int, path: str, vad_config: VadConfig, packed: bool) -> None:
        self.index = index
        self.path = path
        self.recording = CallRecording(path)
        self.info = self.recording.info
        self.dual_mono = self.info.channels == 2 and self.recording.channels_identical()
        self.used = [0] if self.dual_mono else list(range(self.info.channels))
        self.labels = speaker_labels(len(self.used))
        # heard alone, in pieces of its own speech; packed, a long mono recording still is
        # (a channel of a two-sided call is turns, not continuous talk: packed; see above)
        self.long = not packed or (self.info.duration > LONG_FORM_S and len(self.used) == 1)
        self.chunkers = [PauseChunker(create_vad(vad_config), LONG_BLOCK_S, LONG_MIN_BLOCK_S)
                         if self.long else PauseChunker(create_vad(vad_config))
                         for _ in self.used]
        self.segments: list[SpeakerSegment] = []
        self.languages: Counter[str] = Counter()
        self.samples = 0
        self.out = 0  # samples handed to the decoder and not yet back (it may cut a piece)
        self.read = False  # every block read and cut
        self.failed = False
        self.spent_s = 0.0  # reading, cutting, and this recording's share of decoding

    def pieces(self, chunks: list[Chunk], index: int, vad_config: VadConfig) -> Iterator[Piece]:
        for chunk in chunks:
            audio = Audio(chunk.samples, SPEECH_RATE)
            for start, end in speech_regions(audio, vad_config):
                piece = Piece((self.index, index), chunk.start + start, audio.slice(start, end))
                self.out += len(piece.samples)
                yield piece

    def decode_long(self, cuts: list[list[Chunk]], decoder: LongFormDecoder) -> None:
        """Blocks of each channel, decoded here and now, together (``LongFormDecoder``)."""
        chunks = [(channel, chunk) for channel, cut in enumerate(cuts) for chunk in cut]
        if not chunks:
            return
        heard = decoder.decode_all([chunk.samples for _, chunk in chunks])
        for (channel, chunk), transcript in zip(chunks, heard, strict=True):
            self.out += len(chunk.samples)
            self.take(Piece((self.index, channel), chunk.start, chunk.samples), transcript)

    def take(self, piece: Piece, transcript: Transcript) -> None:
        self.out -= len(piece.samples)
        index = piece.owner[1]  # type: ignore[index]
        found = _speaker_segments(piece, transcript, self.labels[index], self.used[index])
        if found:
            self.languages[transcript.language] += len(found)
        self.segments.extend(found)

    def transcript(self, default_language: str) -> CallTranscript:
        if len(self.used) > 1:  # the other side may speak in one side's pause
            self.segments = _split_at_turns(self.segments)
        self.segments.sort(key=lambda s: (s.start, s.channel))
        language = (self.languages.most_common(1)[0][0] if self.languages
                    else default_language)
        return CallTranscript(path=self.path, duration=self.samples / SPEECH_RATE,
                              speakers=self.labels, segments=tuple(self.segments),
                              language=language, sample_rate=self.info.sample_rate,
                              channels=self.info.channels,
                              extra={"dual_mono": True} if self.dual_mono else {})


Finished = tuple[str, "CallTranscript | Exception", float]  # path, result or error, seconds


def transcribe_recordings(paths: Sequence[str | Path], transcriber: Transcriber,
                          vad_config: VadConfig, default_language: str = "en",
                          pack: bool = False) -> Iterator[Finished]:
    """Several recordings, each channel its own speaker, segments in time order.

    Each is heard alone, block by block, in short pieces of its speech
    (``LongFormDecoder``), as it is read. With ``pack``, the speech of short
    recordings is packed into shared 30-s windows instead (``asr.packing``;
    a mono recording longer than ``LONG_FORM_S`` is still heard alone). A
    recording is yielded as soon as its last piece is back, with the seconds
    spent on it (its reading, and its share of each window by duration).
    A recording that cannot be read is yielded with the error, and the rest go
    on. A stereo file whose two channels are the same signal is one speaker
    saved twice, and is transcribed once.
    """
    lanes = int(getattr(transcriber, "replicas", 1))
    decoder = (PackedDecoder(transcriber, lanes=lanes) if pack and _can_pack(transcriber)
               else None)
    try:
        long_form = LongFormDecoder(transcriber, vad_config)
        opened: dict[int, _OpenRecording] = {}

        def decoded(pairs: list[tuple[Piece, Transcript]], spent: float) -> None:
            total = sum(p.duration for p, _ in pairs) or 1.0
            for piece, transcript in pairs:
                owner = opened[piece.owner[0]]  # type: ignore[index]
                owner.spent_s += spent * piece.duration / total
                owner.take(piece, transcript)

        def decode(piece: Piece) -> float:
            """Hands a piece on; the seconds it took are charged to the pieces it finished."""
            started = time.perf_counter()
            assert decoder is not None  # only packed recordings are cut into pieces here
            pairs = decoder.add(piece)
            spent = time.perf_counter() - started
            decoded(pairs, spent)
            return spent

        def hear(record: _OpenRecording, cuts: list[list[Chunk]]) -> float:
            """Each channel's newly cut audio heard; the seconds spent on shared windows."""
            if record.long:
                record.decode_long(cuts, long_form)
                return 0.0
            return sum(decode(piece) for channel, cut in enumerate(cuts)
                       for piece in record.pieces(cut, channel, vad_config))

        def finished() -> Iterator[Finished]:
            for index in [i for i, r in opened.items() if r.read and r.out == 0]:
                record = opened.pop(index)
                if not record.failed:
                    yield record.path, record.transcript(default_language), record.spent_s

        for index, path in enumerate(map(str, paths)):
            started, decoding = time.perf_counter(), 0.0
            record = None
            try:
                record = opened[index] = _OpenRecording(index, path, vad_config,
                                                            decoder is not None)
                for block in record.recording.speech_blocks():
                    record.samples += len(block)
                    decoding += hear(record, [chunker.push(block[:, channel]) for channel, chunker
                                              in zip(record.used, record.chunkers, strict=True)])
                decoding += hear(record, [chunker.flush() for chunker in record.chunkers])
                record.read = True
            except Exception as exc:  # noqa: BLE001 - reported per file, the others go on
                if record is not None:
                    record.failed = record.read = True
                yield path, exc, time.perf_counter() - started
            if record is not None:
                record.spent_s += time.perf_counter() - started - decoding
            yield from finished()
        if decoder is not None:
            started = time.perf_counter()
            pairs = decoder.flush()
            decoded(pairs, time.perf_counter() - started)
        yield from finished()
        for record in opened.values():  # a window they shared failed to decode
            if not record.failed:
                yield record.path, RuntimeError("decoding a window it shared with another file "
                                                "failed; rerun to retry"), record.spent_s
    finally:
        if decoder is not None:
            decoder.close()


def _can_pack(transcriber: Transcriber) -> bool:
    """Recordings may share a window only when they are decoded in one known language."""
    return bool(getattr(transcriber, "one_language", False))


def transcribe_recording(path: str | Path, transcriber: Transcriber, vad_config: VadConfig,
                         default_language: str = "en") -> CallTranscript:
    """One recording (its own speech packed into shared windows); errors are raised."""
    for _, result, _ in transcribe_recordings([path], transcriber, vad_config,
                                              default_language):
        if isinstance(result, Exception):
            raise result
        return result
    raise AssertionError(f"{path} yielded no transcript")


def label_intents(transcript: CallTranscript, recognizer: IntentRecognizer) -> CallTranscript:
    """Each caller segment's intent, with what the agent had just said as context."""
    labelled, last_agent = [], ""
    for seg in transcript.segments:
        if seg.speaker == "caller":
            understanding = recognizer.understand(seg.text, context=last_agent)
            seg = replace(seg, intent=understanding.intent,
                          intent_confidence=understanding.confidence)
        else:
            last_agent = seg.text
        labelled.append(seg)
    return replace(transcript, segments=tuple(labelled))


# ---- one worker -----------------------------------------------------------------------------

def asr_id(config: Config) -> str:
    return f"{config.asr.backend}:{config.asr.model}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, VoicedeskError) else f"{type(exc).__name__}: {text}"


class RecordingTranscriber:
    """What one worker holds: the models, loaded once, then one call per group of files.

    Every failure is returned as the file's outcome, never raised: one bad
    file must not take the batch (or a Ray actor) down with it.
    """

    def __init__(self, config: Config, intents: bool = False) -> None:
        from asr.transcriber import create_transcriber
        from voicedesk.models.prepare import ModelStore

        models = ModelStore(config.models_dir)
        self.config = config
        # A worker with several threads runs as many single-threaded model workers, which
        # decode more per core (benchmarks/README.md); a long recording's pieces are
        # decoded that many at once (``LongFormDecoder``).
        threads = config.asr.threads
        replicas = threads if threads > 1 and config.asr.backend == "faster-whisper" else 1
        self.transcriber = create_transcriber(
            replace(config.asr, threads=1) if replicas > 1 else config.asr, models, replicas)
        self.recognizer = _load_recognizer(config, models) if intents else None

    def __call__(self, path: str) -> Outcome:
        return next(iter(self.transcribe_group([path])))

    def transcribe_group(self, paths: Sequence[str]) -> Iterator[Outcome]:
        """The files' outcomes as each finishes; their speech shares windows (see
        ``transcribe_recordings``)."""
        # Size and time as they were before reading: a file still being written when we
        # read it looks changed to the next run, and is done again.
        stats: dict[str, os.stat_result | Exception] = {}
        for path in paths:
            try:
                stats[path] = Path(path).stat()
            except OSError as exc:
                stats[path] = exc
        readable = [p for p in paths if not isinstance(stats[p], Exception)]
        for path in paths:
            if isinstance(stats[path], Exception):
                yield {"path": path, "error": _one_line(stats[path])}  # type: ignore[arg-type]
        results = transcribe_recordings(readable, self.transcriber, self.config.vad,
                                        self.config.asr.language or "en", self.config.asr.pack)
        pending = set(readable)
        while True:
            try:
                path, result, spent = next(results)
            except StopIteration:
                return
            except MemoryError:
                yield from ({"path": p, "error": "ran out of memory; use fewer --workers"}
                            for p in readable if p in pending)
                return
            pending.discard(path)
            yield self._outcome(path, result, spent, stats[path])  # type: ignore[arg-type]

    def _outcome(self, path: str, result: CallTranscript | Exception, spent: float,
                 stat: os.stat_result) -> Outcome:
        if isinstance(result, MemoryError):
            return {"path": path, "error": "ran out of memory; use fewer --workers"}
        if isinstance(result, Exception):
            return {"path": path, "error": _one_line(result)}
        transcript = result
        if self.recognizer is not None:
            started = time.perf_counter()
            try:
                transcript = label_intents(transcript, self.recognizer)
            except Exception as exc:  # noqa: BLE001 - reported per file, the batch goes on
                return {"path": path, "error": _one_line(exc)}
            spent += time.perf_counter() - started
        transcript = transcript.with_extra(
            size=stat.st_size, mtime=stat.st_mtime, asr=asr_id(self.config),
            intents=self.recognizer is not None, processing_s=round(spent, 3),
            rtf=round(spent / transcript.duration, 4) if transcript.duration else 0.0)
        return {"path": path, "record": transcript.to_record()}


def _load_recognizer(config: Config, models: Any) -> IntentRecognizer:
    from nlu.domain import load_domain
    from nlu.embeddings import SentenceEmbedder
    from nlu.llm.engine import create_engine
    from nlu.understanding import IntentRecognizer
    from training.intent_classifier import configured_classifier

    domain = load_domain(config.nlu.domain)
    embedder = SentenceEmbedder(models.embeddings(config.nlu.embeddings))
    return IntentRecognizer(create_engine(config.llm, models), embedder, domain,
                            config.nlu.examples_per_turn, config.nlu.retrieval_weight,
                            classifier=configured_classifier(config, domain, models),
                            confident=config.nlu.classifier_confident)


class _Unloadable:
    """Stands in for a worker whose models failed to load, and answers every file with why.

    Raising in a pool initializer or an actor constructor would surface as a
    broken pool or endless actor restarts; a "fatal" outcome lets the driver
    stop the batch with the real reason instead.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, path: str) -> Outcome:
        return {"path": path, "fatal": self.reason}


def _load_worker(config: Config, intents: bool) -> RecordingTranscriber | _Unloadable:
    try:
        return RecordingTranscriber(config, intents)
    except Exception as exc:  # noqa: BLE001 - handed to the driver, which stops the batch
        return _Unloadable(f"models could not be loaded: {_one_line(exc)}")


_worker: RecordingTranscriber | _Unloadable | None = None


def _init_worker(config: Config, intents: bool, threads: int) -> None:
    # Before the first import of torch or CTranslate2 in this process: OpenMP reads it once.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    global _worker
    _worker = _load_worker(config, intents)


def _work(paths: list[str]) -> list[Outcome]:
    assert _worker is not None, "worker used before _init_worker"
    return _group_outcomes(_worker, paths)


def _group_outcomes(worker: RecordingTranscriber | _Unloadable,
                    paths: list[str]) -> list[Outcome]:
    if isinstance(worker, _Unloadable):
        return [worker(p) for p in paths]
    return list(worker.transcribe_group(paths))


class RayTranscriber:
    """The Ray Data actor: a ``RecordingTranscriber`` per actor, one group of files per row."""

    def __init__(self, config: Config, intents: bool) -> None:
        self.worker = _load_worker(config, intents)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [json.dumps(o) for group in batch["paths"]
                    for o in _group_outcomes(self.worker, json.loads(group))]
        return {"outcome": np.array(outcomes, dtype=object)}


# ---- the batch ------------------------------------------------------------------------------

def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_workers(requested: int, files: int, cores: int, threads: int = 0) -> tuple[int, int]:
    """(worker processes, threads each), keeping workers x threads within the cores.

    Default: one worker per core with one thread, up to ``MAX_DEFAULT_WORKERS``
    (each holds a model in memory). CTranslate2 decodes Whisper's tokens faster
    on one thread than on two (the matrices are too small to share), and the
    packed windows keep every worker's encoder busy, so on a 2-core machine
    two single-threaded workers transcribe more per second than one with both
    cores (benchmarks/README.md). A single file gets every core.
    """
    workers = requested if requested > 0 else min(cores, MAX_DEFAULT_WORKERS)
    workers = max(1, min(workers, files))
    fair = max(1, cores // workers)
    return workers, min(threads, fair) if threads > 0 else fair


def _audio_seconds(path: str) -> float:
    """Channel-seconds of audio by the file's header; 0 for a file that cannot be opened
    (its worker reports why)."""
    try:
        info = CallRecording(path).info
    except Exception:  # noqa: BLE001 - the worker reports it with its reason
        return 0.0
    return info.duration * info.channels


def plan_groups(paths: Sequence[str], workers: int,
                seconds: Callable[[str], float] = _audio_seconds,
                most_s: float = GROUP_AUDIO_S) -> list[list[str]]:
    """The files in runs that are transcribed together, their speech sharing windows.

    Runs of neighbouring files with about equal audio, at most ``most_s`` each
    (a long recording alone may exceed it), and at least one per worker so
    every worker has work. The runs depend only on the files and the worker
    count, so local and Ray batches cut them alike and give the same text.
    """
    if not paths:
        return []
    lengths = [seconds(p) for p in paths]
    total = sum(lengths)
    count = min(len(paths), max(workers, math.ceil(total / most_s)))
    share = total / count if total else 1.0
    groups: list[list[str]] = [[] for _ in range(count)]
    done = 0.0
    for path, length in zip(paths, lengths, strict=True):
        # By where the file's middle falls: runs stay in order and about equal.
        groups[min(count - 1, int((done + length / 2) / share))].append(path)
        done += length
    return [g for g in groups if g]


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def find_inputs(arguments: Sequence[str],
                exclude: Path | None = None) -> tuple[list[Path], list[Outcome]]:
    """The files the arguments name, and an error outcome for each that names nothing.

    A folder is walked recursively and taken whole, hidden files aside: a file
    that is not audio is reported, not silently passed over. A glob narrows a
    folder (``calls/**/*.wav``).
    """
    found: dict[Path, None] = {}
    missing: list[Outcome] = []
    skip = exclude.resolve() if exclude is not None else None

    def outside_out(path: Path) -> bool:  # never our own transcripts, on a rerun
        return skip is None or skip not in path.resolve().parents

    def add_folder(folder: Path) -> None:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).parts
            if path.is_file() and not any(p.startswith(".") for p in relative) and (
                    outside_out(path)):
                found[path.resolve()] = None

    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            add_folder(path)
        elif path.exists():
            found[path.resolve()] = None
        elif _has_magic(argument):
            matches = sorted(glob.glob(str(path), recursive=True))
            for match in map(Path, matches):
                if match.is_dir():
                    add_folder(match)
                elif match.is_file() and outside_out(match):
                    found[match.resolve()] = None
            if not matches:
                missing.append({"path": argument, "error": f"{argument} matches no files"})
        else:
            missing.append({"path": argument, "error": f"{argument} does not exist"})
    return list(found), missing


def output_names(paths: Sequence[Path], earlier: Iterable[str] = ()) -> dict[str, str]:
    """Base name of each file's SRT/VTT/TXT: its stem, made unique by a hash when shared,
    in this run or with a file an earlier run wrote into the same folder (``earlier``:
    the paths in its ledger), so one call's text never replaces another's."""
    stems = Counter(Path(p).stem for p in {*map(str, paths), *earlier})
    return {str(p): p.stem if stems[p.stem] == 1 else
            f"{p.stem}-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}" for p in paths}


def _write_atomic(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.partial")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


class Ledger:
    """``transcripts.jsonl``: the results, and the memory of which files are done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.torn = 0
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.records[record["path"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.torn += 1  # a line cut short by an interrupted run: redo that file

    def is_done(self, path: Path, asr: str, intents: bool) -> bool:
        record = self.records.get(str(path))
        if record is None:
            return False
        stat = path.stat()
        return (record.get("size") == stat.st_size and record.get("mtime") == stat.st_mtime
                and record.get("asr") == asr and (record.get("intents", False) or not intents))

    def append(self, record: dict[str, Any]) -> None:
        self.records[record["path"]] = record
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def compact(self) -> None:
        """One line per file, latest result, sorted by path: a stable file to diff."""
        lines = [json.dumps(self.records[p], ensure_ascii=False) + "\n"
                 for p in sorted(self.records)]
        _write_atomic(self.path, "".join(lines))


@dataclass(frozen=True)
class BatchOptions:
    out_dir: Path
    formats: tuple[str, ...] = ("jsonl", "srt", "vtt", "txt")
    workers: int = 0  # 0: one per two cores
    ray_address: str | None = None  # "local", or a cluster address such as ray://head:10001
    intents: bool = False


@dataclass
class BatchSummary:
    transcribed: int = 0
    skipped: int = 0
    failed: list[Outcome] = field(default_factory=list)
    audio_s: float = 0.0
    wall_s: float = 0.0
    workers: int = 0
    threads: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self, errors_path: Path) -> str:
        failed = (f"{len(self.failed)} failed (reasons in {errors_path})" if self.failed
                  else "0 failed")
        speed = (f"; {self.audio_s:.1f} s of audio in {self.wall_s:.1f} s "
                 f"(real-time factor {self.wall_s / self.audio_s:.3f})" if self.audio_s else "")
        return (f"{self.transcribed} transcribed, {self.skipped} skipped (already done), "
                f"{failed}{speed}")


class _Results:
    """Writes each outcome as it arrives: ledger line, subtitle and text files, or an error."""

    def __init__(self, options: BatchOptions, ledger: Ledger, names: dict[str, str],
                 summary: BatchSummary) -> None:
        self.options = options
        self.ledger = ledger
        self.names = names
        self.summary = summary
        self.errors = options.out_dir / ERRORS

    def views(self, record: dict[str, Any]) -> dict[str, str]:
        transcript = CallTranscript.from_record(record)
        base = self.names.get(record["path"]) or Path(record["path"]).stem
        written = {}
        for fmt in self.options.formats:
            if fmt in RENDERERS:
                name = f"{base}.{fmt}"
                _write_atomic(self.options.out_dir / name, RENDERERS[fmt](transcript))
                written[fmt] = name
        return written

    def fail(self, outcome: Outcome) -> None:
        self.summary.failed.append(outcome)
        with self.errors.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"path": outcome["path"], "error": outcome["error"]},
                                    ensure_ascii=False) + "\n")

    def __call__(self, outcome: Outcome) -> None:
        if "fatal" in outcome:
            raise VoicedeskError(outcome["fatal"])
        if "error" in outcome:
            self.fail(outcome)
            return
        record = outcome["record"]
        record["outputs"] = {"jsonl": LEDGER, **self.views(record)}
        self.ledger.append(record)
        self.summary.transcribed += 1
        self.summary.audio_s += record["duration"]


def run_batch(arguments: Sequence[str], config: Config, options: BatchOptions,
              say: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> BatchSummary:
    """Transcribe every file the arguments name; see the module docstring."""
    started = time.perf_counter()
    out = options.out_dir
    if out.exists() and not out.is_dir():
        raise VoicedeskError(f"--out {out} is a file; give a folder for the transcripts")
    paths, missing = find_inputs(arguments, exclude=out)
    if not paths and not missing:
        raise VoicedeskError(f"no files found in {' '.join(arguments)}; give audio files, "
                             f"folders or globs such as 'calls/**/*.wav'")
    out.mkdir(parents=True, exist_ok=True)
    (out / ERRORS).write_text("", encoding="utf-8")  # this run's errors only
    ledger = Ledger(out / LEDGER)
    summary = BatchSummary()
    results = _Results(options, ledger, output_names(paths, ledger.records), summary)
    for outcome in missing:
        results.fail(outcome)

    todo = []
    for path in paths:
        if ledger.is_done(path, asr_id(config), options.intents):
            summary.skipped += 1
            record = ledger.records[str(path)]
            wanted = {f"{results.names[str(path)]}.{f}" for f in options.formats if f != "jsonl"}
            if any(not (out / name).is_file() for name in wanted):
                record["outputs"] = {**record.get("outputs", {}), **results.views(record)}
        else:
            todo.append(path)
    if summary.skipped:
        say(f"skipping {summary.skipped} file(s) already transcribed, unchanged since "
            f"(recorded in {out / LEDGER})")
    try:
        if todo:
            cores = cpu_cores()
            workers, threads = plan_workers(options.workers, len(todo), cores, config.asr.threads)
            if workers > cores and not options.ray_address:
                say(f"note: {workers} workers on {cores} cores will compete for them; "
                    f"--workers {cores} is usually faster here")
            summary.workers, summary.threads = workers, threads
            worker_config = copy.deepcopy(config)
            worker_config.asr.threads = threads
            worker_config.llm.threads = threads
            where = f"Ray ({options.ray_address})" if options.ray_address else "this machine"
            say(f"transcribing {len(todo)} file(s) on {where}: {workers} worker(s) x "
                f"{threads} thread(s), {asr_id(config)}")
            run = _run_ray if options.ray_address else _run_local
            with _progress_bar(len(todo)) as bar:
                def handle(outcome: Outcome) -> None:
                    results(outcome)
                    bar.update(1)
                    bar.set_postfix(failed=len(summary.failed), refresh=False)

                run([str(p) for p in todo], worker_config, options, workers, threads, handle)
    finally:
        ledger.compact()
        summary.wall_s = time.perf_counter() - started
    return summary


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, desc="transcribing",
                dynamic_ncols=True, mininterval=0.5)


class LocalWorkers:
    """``workers`` processes with their models loaded (this process itself when one), for
    groups of files; a context manager, so the processes end with the batch."""

    def __init__(self, config: Config, intents: bool, workers: int, threads: int) -> None:
        self.workers = workers
        self._worker: RecordingTranscriber | None = None
        self._pool: ProcessPoolExecutor | None = None
        if workers == 1:
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
            self._worker = RecordingTranscriber(config, intents)
        else:
            # spawn, not fork: a forked copy of a process that already started OpenMP threads
            # can hang.
            self._pool = ProcessPoolExecutor(max_workers=workers,
                                             mp_context=get_context("spawn"),
                                             initializer=_init_worker,
                                             initargs=(config, intents, threads))

    def __enter__(self) -> LocalWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=exc[0] is not None)

    def run(self, groups: Sequence[list[str]]) -> Iterator[Outcome]:
        """Every file's outcome, as each file (one worker) or each group (several) ends."""
        if self._worker is not None:
            for group in groups:
                yield from self._worker.transcribe_group(group)
            return
        assert self._pool is not None
        futures = {self._pool.submit(_work, group): group for group in groups}
        for future in as_completed(futures):
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                outcomes = [{"path": path, "error": "a worker process died (crash or out of "
                             "memory) while this file was queued or running; rerun the "
                             "command to retry it"} for path in futures[future]]
            yield from outcomes


def _run_local(paths: list[str], config: Config, options: BatchOptions, workers: int,
               threads: int, handle: Callable[[Outcome], None]) -> None:
    with LocalWorkers(config, options.intents, workers, threads) as local:
        for outcome in local.run(plan_groups(paths, workers)):
            handle(outcome)


def check_ray_address(address: str, timeout_s: float = 5.0) -> None:
    """A cluster's ``host:port`` must answer before Ray is asked to join it: Ray itself
    retries an address where nothing listens for minutes, printing its own warnings."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", or a ray:// client address: Ray's own checks apply
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise VoicedeskError(f"could not reach the Ray cluster at {address}: nothing answers "
                             f"there ({exc.strerror or exc}); start one (ray start --head) or "
                             f"use --ray local") from None


def _run_ray(paths: list[str], config: Config, options: BatchOptions, workers: int,
             threads: int, handle: Callable[[Outcome], None]) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise VoicedeskError("--ray needs Ray Data: pip install 'voicedesk[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        address = None if options.ray_address in (None, "local") else options.ray_address
        if address is not None:
            check_ray_address(address)
        try:
            ray.init(address=address, num_cpus=cpu_cores() if address is None else None,
                     include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise VoicedeskError(f"could not reach the Ray cluster at {options.ray_address}: "
                                 f"{str(exc).splitlines()[0]}; start one (ray start --head) or "
                                 f"use --ray local") from None
    try:
        # Ours counts files; Ray's bars and per-stage log lines would fight it on stderr.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.enable_operator_progress_bars = False
        groups = plan_groups(paths, workers)
        dataset = ray.data.from_items([{"paths": json.dumps(g)} for g in groups],
                                      override_num_blocks=len(groups))
        results = dataset.map_batches(
            RayTranscriber, fn_constructor_kwargs={"config": config, "intents": options.intents},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}})
        for row in results.iter_rows():
            handle(json.loads(row["outcome"]))
    finally:
        if started_here:
            ray.shutdown()


def iter_records(out_dir: Path) -> Iterator[dict[str, Any]]:
    """The records of a finished batch, for tools that read its results."""
    yield from Ledger(out_dir / LEDGER).records.values()
