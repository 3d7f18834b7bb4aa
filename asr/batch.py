"""Batch transcription of recorded calls: many files, hour-long files, resumable.

A recording is streamed from disk in blocks and each channel is cut into
windows of at most 30 s (Whisper's input) at pauses, so memory stays bounded
however long the call. Whisper only hears the stretches the voice activity
detector calls speech: a silent channel costs nothing, and silence or line
noise cannot be turned into invented words.

Files are spread over worker processes (or Ray actors with ``--ray``), each
loading the models once. Results are appended to ``transcripts.jsonl`` as
each file finishes; that file is also the ledger a rerun reads to skip files
already done (same path, size and modification time, same ASR model). A file
that cannot be read is written to ``errors.jsonl`` with a one-line reason and
the batch carries on.
"""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asr.audio import SPEECH_RATE, Audio
from asr.formats import RENDERERS, CallTranscript, SpeakerSegment, SpokenWord
from asr.telephony import CallRecording, speaker_labels
from asr.transcriber import Transcriber
from voice.vad import VoiceActivityDetector, create_vad, split_turns
from voicedesk.config import Config, VadConfig
from voicedesk.errors import VoicedeskError

if TYPE_CHECKING:
    from nlu.understanding import IntentRecognizer

MAX_CHUNK_S = 30.0  # Whisper's window: longer input is cut blindly by the model itself
MIN_CUT_S = 10.0  # a forced cut looks for a pause only past this point, so chunks stay long
MERGE_GAP_S = 2.0  # speech closer than this is transcribed together, for context
REGION_PAD_S = 0.3  # lead-in beyond the endpointer's padding: without it Whisper can clip a word
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


def speech_regions(audio: Audio, vad_config: VadConfig, gap_s: float = MERGE_GAP_S,
                   pad_s: float = REGION_PAD_S) -> list[tuple[float, float]]:
    """Stretches of speech in a chunk, padded, neighbours closer than ``gap_s`` joined."""
    regions: list[tuple[float, float]] = []
    for span in split_turns(audio, vad_config):
        start, end = max(0.0, span.start - pad_s), min(audio.duration, span.end + pad_s)
        if regions and start - regions[-1][1] < gap_s:
            regions[-1] = (regions[-1][0], end)
        else:
            regions.append((start, end))
    return regions


def transcribe_chunk(chunk: Chunk, transcriber: Transcriber, vad_config: VadConfig,
                     speaker: str, channel: int,
                     languages: Counter[str] | None = None) -> list[SpeakerSegment]:
    """The speech in one window, as segments on the recording's clock."""
    audio = Audio(chunk.samples, SPEECH_RATE)
    segments = []
    for start, end in speech_regions(audio, vad_config):
        piece = audio.slice(start, end)
        result = transcriber.transcribe(piece)
        offset, limit = chunk.start + start, chunk.start + len(piece) / SPEECH_RATE + start
        for seg in result.segments:
            text = seg.text.strip()
            if not text:
                continue
            if languages is not None:
                languages[result.language] += 1
            words = tuple(SpokenWord(min(offset + w.start, limit), min(offset + w.end, limit),
                                     w.text.strip(), w.probability) for w in seg.words)
            seg_start = min(offset + seg.start, limit)
            segments.append(SpeakerSegment(seg_start, max(seg_start, min(offset + seg.end, limit)),
                                           text, speaker, channel, words))
    return segments


def transcribe_recording(path: str | Path, transcriber: Transcriber, vad_config: VadConfig,
                         default_language: str = "en") -> CallTranscript:
    """One recording, each channel its own speaker, segments in time order.

    A stereo file whose two channels are the same signal is one speaker saved
    twice, and is transcribed once.
    """
    recording = CallRecording(path)
    info = recording.info
    dual_mono = info.channels == 2 and recording.channels_identical()
    used = [0] if dual_mono else list(range(info.channels))
    labels = speaker_labels(len(used))
    chunkers = [PauseChunker(create_vad(vad_config)) for _ in used]
    languages: Counter[str] = Counter()
    segments: list[SpeakerSegment] = []
    samples = 0

    def take(chunks: list[Chunk], index: int) -> None:
        for chunk in chunks:
            segments.extend(transcribe_chunk(chunk, transcriber, vad_config, labels[index],
                                             used[index], languages))

    for block in recording.speech_blocks():
        samples += len(block)
        for index, channel in enumerate(used):
            take(chunkers[index].push(block[:, channel]), index)
    for index in range(len(used)):
        take(chunkers[index].flush(), index)
    segments.sort(key=lambda s: (s.start, s.channel))
    language = languages.most_common(1)[0][0] if languages else default_language
    return CallTranscript(path=str(path), duration=samples / SPEECH_RATE, speakers=labels,
                          segments=tuple(segments), language=language,
                          sample_rate=info.sample_rate, channels=info.channels,
                          extra={"dual_mono": True} if dual_mono else {})


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
    """What one worker holds: the models, loaded once, then one call per file.

    Every failure is returned as the file's outcome, never raised: one bad
    file must not take the batch (or a Ray actor) down with it.
    """

    def __init__(self, config: Config, intents: bool = False) -> None:
        from asr.transcriber import create_transcriber
        from voicedesk.models.prepare import ModelStore

        models = ModelStore(config.models_dir)
        self.config = config
        self.transcriber = create_transcriber(config.asr, models)
        self.recognizer = _load_recognizer(config, models) if intents else None

    def __call__(self, path: str) -> Outcome:
        started = time.perf_counter()
        try:
            # Size and time as they were before reading: a file still being written when we
            # read it looks changed to the next run, and is done again.
            stat = Path(path).stat()
            transcript = transcribe_recording(path, self.transcriber, self.config.vad,
                                              self.config.asr.language or "en")
            if self.recognizer is not None:
                transcript = label_intents(transcript, self.recognizer)
        except MemoryError:
            return {"path": path, "error": "ran out of memory; use fewer --workers"}
        except Exception as exc:  # noqa: BLE001 - reported per file, the batch goes on
            return {"path": path, "error": _one_line(exc)}
        spent = time.perf_counter() - started
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

    domain = load_domain(config.nlu.domain)
    embedder = SentenceEmbedder(models.embeddings(config.nlu.embeddings))
    return IntentRecognizer(create_engine(config.llm, models), embedder, domain,
                            config.nlu.examples_per_turn)


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


def _work(path: str) -> Outcome:
    assert _worker is not None, "worker used before _init_worker"
    return _worker(path)


class RayTranscriber:
    """The Ray Data actor: a ``RecordingTranscriber`` per actor, one file per row."""

    def __init__(self, config: Config, intents: bool) -> None:
        self.worker = _load_worker(config, intents)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [json.dumps(self.worker(str(p))) for p in batch["path"]]
        return {"outcome": np.array(outcomes, dtype=object)}


# ---- the batch ------------------------------------------------------------------------------

def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_workers(requested: int, files: int, cores: int, threads: int = 0) -> tuple[int, int]:
    """(worker processes, threads each), keeping workers x threads within the cores.

    Default: one worker per two cores, each with two threads. Whisper on a
    CPU gains little past a few threads per file, and every worker costs a
    model in memory, so a 2-core machine gets one worker with both cores.
    """
    workers = requested if requested > 0 else max(1, cores // 2)
    workers = max(1, min(workers, files))
    fair = max(1, cores // workers)
    return workers, min(threads, fair) if threads > 0 else fair


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

    def add_folder(folder: Path) -> None:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).parts
            if path.is_file() and not any(p.startswith(".") for p in relative) and (
                    skip is None or skip not in path.resolve().parents):
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
                elif match.is_file():
                    found[match.resolve()] = None
            if not matches:
                missing.append({"path": argument, "error": f"{argument} matches no files"})
        else:
            missing.append({"path": argument, "error": f"{argument} does not exist"})
    return list(found), missing


def output_names(paths: Sequence[Path]) -> dict[str, str]:
    """Base name of each file's SRT/VTT/TXT: its stem, made unique by a hash when shared."""
    stems = Counter(p.stem for p in paths)
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
    results = _Results(options, ledger, output_names(paths), summary)
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
                    f"--workers {max(1, cores // 2)} is usually faster here")
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


def _run_local(paths: list[str], config: Config, options: BatchOptions, workers: int,
               threads: int, handle: Callable[[Outcome], None]) -> None:
    if workers == 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        worker = RecordingTranscriber(config, options.intents)
        for path in paths:
            handle(worker(path))
        return
    # spawn, not fork: a forked copy of a process that already started OpenMP threads can hang.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=_init_worker,
                             initargs=(config, options.intents, threads)) as pool:
        futures = {pool.submit(_work, path): path for path in paths}
        try:
            for future in as_completed(futures):
                try:
                    handle(future.result())
                except BrokenProcessPool:
                    handle({"path": futures[future], "error": "a worker process died (crash or "
                            "out of memory) while this file was queued or running; rerun the "
                            "command to retry it"})
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


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
        dataset = ray.data.from_items([{"path": p} for p in paths],
                                      override_num_blocks=len(paths))
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
