"""Batch ASR throughput: `voicedesk transcribe`'s path against openai-whisper, side by side.

Run from the repository root::

    python benchmarks/asr_batch.py            # quick: every dev recording, 3 repetitions
    python benchmarks/asr_batch.py --full     # 5 repetitions
    python benchmarks/asr_batch.py --long-form   # also: the same audio as one recording
    python benchmarks/asr_batch.py --stereo-calls   # also: as turns of a two-channel call

It prints a table and writes the figures as JSON (``--json``, default
``benchmarks/results/asr_batch.json``). The issue's target: the batch path
transcribes at least 5x as much audio per wall-clock second as openai-whisper
on the same weights, with an equal or lower WER. Both modes take every
recording (17 files, 81 s, about 2 minutes for both engines): a smaller
sample cannot tell WERs apart (four files are 84 words, one word 1.2 points).

Why it is measured this way:

* The code ``voicedesk transcribe`` runs: "faster-whisper" is ``asr.batch``'s
  ``LocalWorkers`` fed by ``plan_groups``, as ``run_batch`` does: files read
  and resampled from disk inside the clock, each file's speech cut at its
  pauses into short pieces (``asr.long_form``), JSONL records built. The
  worker split is the one the command picks on this machine (``--workers``
  to choose another). "faster-whisper file by file" is the backend's own
  ``transcribe`` on each file, for reference; ``--packed`` adds the batch
  path with ``asr.pack`` (several files' speech in shared 30-s windows).
* SAME weights: openai-whisper runs the checkpoint that ``ModelStore.whisper_openai``
  converts from the very CTranslate2 folder faster-whisper loads, so the only
  differences are the engine, the arithmetic (int8 against fp32) and the batch
  path around it. openai-whisper is the reference implementation run as its
  README runs it: ``whisper.transcribe`` on each file, already decoded to
  16 kHz (its reading is not timed), with the project's decoding options
  (greedy, temperature 0, word timestamps, no conditioning on earlier text,
  the same no-speech rule).
* SAME threads: ``--threads`` (default: every core the process may use) is the
  total for each engine: openai-whisper gets them all in one process; the
  batch path splits them into workers x threads each, never more in total.
* Side by side: each repetition transcribes the whole batch with one engine,
  then with the next, alternating the order, so a neighbour's load on a
  shared machine hits all alike. Throughput is audio seconds per wall second
  of the median repetition; the ratio is also given as the median of the
  per-repetition ratios, which cancels slow drifts. Each repetition takes the
  files in another fixed order (``in_order``) and the WER pools them: packing
  puts neighbours in one window, so the order moves the batch path's WER.
* Preparation (hash checks, conversion), loading (worker processes too) and a
  warm-up on one file per worker happen before any clock starts.
* ``--long-form`` adds a second measurement on one recording made of the same
  files with a second of silence between them, the shape of a call recording
  (each repetition in another fixed order of the files, the WER pooled: where
  Whisper's windows fall moves one 98-s recording's WER by several points),
  with faster-whisper's ``BatchedInferencePipeline`` and the backend's own
  ``transcribe`` on the whole file ("file by file": one file here) as further
  engines. The batch path takes its long-form route there (``LONG_FORM_S``),
  and is also compared with the backend on the whole file, the figure it must
  not fall behind.
* ``--stereo-calls`` adds the recording an analyst has most: a call stored
  with the caller on one channel and the agent on the other, here the same
  files as turns taken in turn (0.6 s apart, line noise on both channels), one
  such call per repetition, the turns in another order each time. openai-whisper
  transcribes each channel; both are scored channel by channel.
* WER: Whisper's EnglishTextNormalizer on reference and hypothesis, after
  mapping ``*`` to "star" and ``#`` to "pound" (phone menus say them and the
  normaliser would drop them), then jiwer over the whole batch.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf
from benchlib import cpu_model, version

from asr.audio import load_audio
from asr.batch import LocalWorkers, cpu_cores, plan_groups, plan_workers
from asr.transcriber import Transcriber, create_transcriber
from asr.transcript import Segment, Transcript
from voicedesk.config import AsrConfig, Config, load_config
from voicedesk.errors import VoicedeskError
from voicedesk.models.prepare import ModelStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO_DIR = ROOT.parent / "shared" / "data" / "asr" / "dev"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "asr_batch.json"
TARGET_RATIO = 5.0
BUSY_LOAD = 0.5  # 1-minute load average per core above which neighbours skew the figures


@dataclass(frozen=True)
class Engine:
    label: str
    config: AsrConfig
    kind: str = "backend"  # "batch": voicedesk's batch path; "pipeline": BatchedInferencePipeline
    workers: int = 1  # batch path: worker processes, config.threads each


class BatchedFasterWhisper:
    """faster-whisper's batched pipeline with the backend's decoding options, for comparison.

    Voice activity detection replaces the backend's no-speech rule here: the
    pipeline only decodes the chunks VAD marks as speech.
    """

    name = "faster-whisper-batched"

    def __init__(self, model: str, config: AsrConfig, batch_size: int = 8) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.model_ref = model
        self.batch_size = batch_size
        self._pipeline = BatchedInferencePipeline(WhisperModel(
            model, device="auto", compute_type=config.compute_type, cpu_threads=config.threads))

    def transcribe(self, samples: np.ndarray, prompt: str | None = None) -> Transcript:
        segments, info = self._pipeline.transcribe(
            samples, language="en", beam_size=1, temperature=0.0, word_timestamps=True,
            condition_on_previous_text=False, initial_prompt=prompt,
            batch_size=self.batch_size)
        return Transcript(tuple(Segment(s.start, s.end, s.text.strip()) for s in segments),
                          info.language, len(samples) / 16_000)


@dataclass(frozen=True)
class Recording:
    path: Path
    samples: np.ndarray
    reference: str

    @property
    def duration(self) -> float:
        return len(self.samples) / 16_000


def say(message: str) -> None:
    print(f"asr_batch: {message}", file=sys.stderr, flush=True)


def normalise(text: str) -> str:
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text.replace("*", " star ").replace("#", " pound "))


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    import jiwer

    return float(jiwer.wer([normalise(r) for r in references], [normalise(h) for h in hypotheses]))


def listed_recordings(audio_dir: Path) -> list[tuple[Path, str]]:
    """Recordings named in each folder's transcripts.tsv, with their reference text."""
    listings = sorted(audio_dir.glob("*/transcripts.tsv"))
    if not listings:
        raise VoicedeskError(f"no */transcripts.tsv under {audio_dir}; pass --audio-dir with "
                             f"folders of recordings and tab-separated references")
    rows = []
    for listing in listings:
        for line in listing.read_text().splitlines():
            if line.strip():
                name, reference = line.split("\t", 1)
                rows.append((listing.parent / name, reference))
    return rows




class Runner(Protocol):
    model_ref: str

    def run(self, recordings: Sequence[Recording]) -> list[str]: ...


class BackendRunner:
    """A backend's ``transcribe`` on each file's samples: openai-whisper's way."""

    def __init__(self, transcriber: Transcriber) -> None:
        self.transcriber = transcriber
        self.model_ref = getattr(transcriber, "model_ref", "")

    def run(self, recordings: Sequence[Recording]) -> list[str]:
        return [self._text(r.samples) for r in recordings]

    def _text(self, samples: np.ndarray) -> str:
        if samples.ndim == 1:
            return self.transcriber.transcribe(samples).text
        # A stereo call, the way an analyst would run a plain transcriber over it to keep
        # the speakers apart: each channel on its own (scored channel by channel).
        return " ".join(self.transcriber.transcribe(np.ascontiguousarray(channel)).text
                        for channel in samples.T)


class BatchPathRunner:
    """``voicedesk transcribe``'s path: ``plan_groups`` and ``LocalWorkers``, files on disk."""

    def __init__(self, config: Config, engine: Engine, store: ModelStore) -> None:
        config = copy.deepcopy(config)
        config.asr = engine.config
        self.model_ref = store.whisper_ct2(engine.config.model)
        self.workers = LocalWorkers(config, False, engine.workers, engine.config.threads)

    def run(self, recordings: Sequence[Recording]) -> list[str]:
        paths = [str(r.path) for r in recordings]
        texts: dict[str, str] = {}
        for outcome in self.workers.run(plan_groups(paths, self.workers.workers)):
            if "record" not in outcome:
                raise VoicedeskError(f"batch path failed on {outcome['path']}: "
                                     f"{outcome.get('error') or outcome.get('fatal')}")
            record = outcome["record"]
            # a stereo call is scored channel by channel (see ``stereo_call``)
            texts[outcome["path"]] = " ".join(
                " ".join(s["text"].strip() for s in record["segments"] if s["channel"] == c)
                for c in range(record.get("channels", 1)))
        return [texts[p] for p in paths]

    def warm(self, recordings: Sequence[Recording]) -> None:
        """One file through every worker process, so each has loaded its model."""
        first = str(recordings[0].path)
        for _ in self.workers.run([[first] for _ in range(self.workers.workers)]):
            pass


def make_runner(engine: Engine, config: Config, store: ModelStore) -> Runner:
    if engine.kind == "batch":
        return BatchPathRunner(config, engine, store)
    if engine.kind == "pipeline":
        return BackendRunner(BatchedFasterWhisper(store.whisper_ct2(engine.config.model),
                                                  engine.config))
    return BackendRunner(create_transcriber(engine.config, store))


def measure(title: str, engines: Sequence[Engine], config: Config, store: ModelStore,
            sets: Sequence[Sequence[Recording]], repetitions: int) -> dict[str, Any]:
    """Each engine on the recordings, ``repetitions`` times; repetition r transcribes
    ``sets[r % len(sets)]`` (sets of equal audio: e.g. the same files in other orders),
    and the WER pools every set's text."""
    recordings = sets[0]
    runners: dict[str, Runner] = {}
    load_s: dict[str, float] = {}
    for engine in engines:
        say(f"{title}: loading {engine.label} ({engine.config.compute_type}, beam "
            f"{engine.config.beam_size}, {engine.workers} x {engine.config.threads} threads)")
        started = time.perf_counter()
        runner = runners[engine.label] = make_runner(engine, config, store)
        if isinstance(runner, BatchPathRunner):
            runner.warm(recordings)
        else:
            runner.run(recordings[:1])  # warm-up, untimed
        load_s[engine.label] = time.perf_counter() - started
    seconds: dict[str, list[float]] = {e.label: [] for e in engines}
    texts: dict[str, dict[int, list[str]]] = {e.label: {} for e in engines}
    try:
        for rep in range(repetitions):
            order = engines if rep % 2 == 0 else list(reversed(engines))
            for engine in order:
                started = time.perf_counter()
                hypotheses = runners[engine.label].run(sets[rep % len(sets)])
                spent = time.perf_counter() - started
                seconds[engine.label].append(spent)
                # greedy: repetitions of one set agree
                texts[engine.label].setdefault(rep % len(sets), hypotheses)
                say(f"{title}: repetition {rep + 1}/{repetitions}: {engine.label} "
                    f"{spent:.2f} s")
    finally:
        for runner in runners.values():
            if isinstance(runner, BatchPathRunner):
                runner.workers.__exit__(None, None, None)
    audio_s = sum(r.duration for r in recordings)
    heard = sorted(texts[engines[0].label])
    references = [r.reference for i in heard for r in sets[i]]

    def pooled(label: str) -> list[str]:
        return [text for i in heard for text in texts[label][i]]

    rows = {}
    for engine in engines:
        wall = float(np.median(seconds[engine.label]))
        rows[engine.label] = {
            "path": {"batch": "voicedesk transcribe (asr.batch, packed windows)",
                     "pipeline": "BatchedInferencePipeline",
                     "backend": "backend.transcribe per file"}[engine.kind],
            "backend": engine.config.backend,
            "compute_type": engine.config.compute_type,
            "beam_size": engine.config.beam_size,
            "workers": engine.workers,
            "threads": engine.config.threads,
            "threads_total": engine.workers * engine.config.threads,
            "weights": os.path.basename(os.path.dirname(str(runners[engine.label].model_ref)))
            or str(runners[engine.label].model_ref),
            "load_s": round(load_s[engine.label], 3),
            "wall_s": [round(s, 3) for s in seconds[engine.label]],
            "wall_s_median": round(wall, 3),
            "audio_s_per_s": round(audio_s / wall, 2),
            "rtf": round(wall / audio_s, 4),
            "wer": round(corpus_wer(references, pooled(engine.label)), 4),
            "hypotheses": pooled(engine.label),
        }
    return {"title": title, "files": len(recordings), "audio_s": round(audio_s, 2),
            "sets": len(heard), "engines": rows, "seconds": seconds}


def summarise(measured: dict[str, Any], fast: str, slow: str = "openai-whisper"
              ) -> dict[str, Any]:
    """How ``fast`` compares with ``slow`` in one measurement, against the issue's target."""
    rows, seconds = measured["engines"], measured["seconds"]
    ratio = rows[fast]["audio_s_per_s"] / rows[slow]["audio_s_per_s"]
    paired = float(np.median([s / f for f, s in zip(seconds[fast], seconds[slow], strict=True)]))
    return {
        "engine": fast,
        "against": slow,
        "throughput_ratio": round(ratio, 2),
        "throughput_ratio_paired_median": round(paired, 2),
        "target_ratio": TARGET_RATIO,
        "ratio_target_met": ratio >= TARGET_RATIO,
        "shortfall": round(1 - ratio / TARGET_RATIO, 3) if ratio < TARGET_RATIO else 0.0,
        "wer_target_met": rows[fast]["wer"] <= rows[slow]["wer"],
        "wer_between_engines": round(corpus_wer(rows[slow]["hypotheses"],
                                                rows[fast]["hypotheses"]), 4),
    }


def print_table(measured: dict[str, Any], summaries: Sequence[dict[str, Any]],
                repetitions: int) -> None:
    header = (f"{'engine':<28} {'compute':<8} {'beam':>4} {'threads':>7} {'audio s':>8} "
              f"{'wall s':>8} {'audio s/s':>10} {'RTF':>7} {'WER':>7}")
    sets = (f", each on another ordering of the files ({measured['sets']}), WER pooled"
            if measured["sets"] > 1 else "")
    print(f"\n{measured['title']}: {measured['files']} recording(s), median of {repetitions} "
          f"repetitions{sets}, same weights and audio")
    print(header)
    print("-" * len(header))
    for label, row in measured["engines"].items():
        threads = f"{row['workers']}x{row['threads']}"
        print(f"{label:<28} {row['compute_type']:<8} {row['beam_size']:>4} {threads:>7} "
              f"{measured['audio_s']:>8.1f} {row['wall_s_median']:>8.2f} "
              f"{row['audio_s_per_s']:>10.2f} {row['rtf']:>7.3f} {row['wer']:>7.2%}")
    for summary in summaries:
        if summary["against"] != "openai-whisper":  # no target there: not slower, not worse
            print(f"{summary['engine']} / {summary['against']}: "
                  f"{summary['throughput_ratio']:.2f}x (paired median "
                  f"{summary['throughput_ratio_paired_median']:.2f}x); WER equal or lower: "
                  f"{'yes' if summary['wer_target_met'] else 'no'}")
            continue
        verdict = ("met" if summary["ratio_target_met"]
                   else f"missed by {summary['shortfall']:.0%}")
        print(f"{summary['engine']} / {summary['against']}: {summary['throughput_ratio']:.2f}x "
              f"(paired median {summary['throughput_ratio_paired_median']:.2f}x), target "
              f">= {TARGET_RATIO:.0f}x {verdict}; WER equal or lower: "
              f"{'yes' if summary['wer_target_met'] else 'no'} "
              f"(between them {summary['wer_between_engines']:.2%})")


FULL_WINDOW = "faster-whisper, 30-s window"
PACKED = "faster-whisper, packed"
VARIANTS = {"full-window": FULL_WINDOW, "packed": PACKED}


def build_engines(model: str, threads: int, workers: int, language: str,
                  extra: Sequence[str], context_s: float = 15.0) -> list[Engine]:
    """The batch path with ``workers`` x (threads / workers), openai-whisper with all threads;
    ``extra``: "per-file" (the backend alone), "pipeline" (BatchedInferencePipeline),
    "full-window" (the batch path with Whisper's whole 30-s encoder window) and "packed"
    (the batch path with ``asr.pack``: short recordings share windows)."""
    fast = AsrConfig(backend="faster-whisper", model=model, compute_type="int8", beam_size=1,
                     threads=threads, language=language, context_s=context_s)
    slow = AsrConfig(backend="openai-whisper", model=model, compute_type="float32",
                     beam_size=1, threads=threads, language=language)
    engines = [Engine("faster-whisper", replace(fast, threads=max(1, threads // workers)),
                      kind="batch", workers=workers)]
    if "full-window" in extra:
        engines.append(Engine(FULL_WINDOW, replace(fast, threads=max(1, threads // workers),
                                                   context_s=30.0),
                              kind="batch", workers=workers))
    if "packed" in extra:
        engines.append(Engine(PACKED, replace(fast, threads=max(1, threads // workers),
                                              pack=True), kind="batch", workers=workers))
    if "per-file" in extra:
        engines.append(Engine("faster-whisper file by file", fast))
    if "pipeline" in extra:
        engines.append(Engine("faster-whisper-batched", fast, kind="pipeline"))
    engines.append(Engine("openai-whisper", slow))
    return engines


def in_order(recordings: Sequence[Recording], order: int) -> list[Recording]:
    """The recordings in a fixed shuffle (``order`` 0: as listed). Packing puts
    neighbours in one window, and Whisper hears each window as one stretch: one order
    is one draw of the batch path's WER (3.8 % as listed, 5.6 % pooled over six
    shuffles of the dev files, 2026-11-30), so each repetition takes another."""
    recordings = list(recordings)
    if order:
        random.Random(order).shuffle(recordings)
    return recordings


def joined(recordings: Sequence[Recording], folder: Path, order: int = 0) -> Recording:
    """One call-like recording: the files in turn, a second of silence after each (written
    to ``folder``, since the batch path reads files). ``order`` 0 keeps the listed order;
    others are fixed shuffles: one ordering is one draw of where Whisper's windows fall,
    which moves the WER of a 98-s recording by several points either way."""
    recordings = in_order(recordings, order)
    gap = np.zeros(16_000, dtype=np.float32)
    samples = np.concatenate([part for r in recordings for part in (r.samples, gap)])
    path = folder / f"joined-{order}.flac"
    sf.write(path, samples, 16_000)
    return Recording(path, load_audio(path).samples, " ".join(r.reference for r in recordings))


def stereo_call(recordings: Sequence[Recording], folder: Path, order: int = 0,
                gap_s: float = 0.6, line_noise: float = 0.002) -> Recording:
    """A call recording as a call centre keeps it: two channels, the files as turns taken
    in turn by caller (left) and agent (right), each channel quiet (line noise at about
    -54 dBFS) while the other talks. ``order`` as in ``joined``. The reference is the
    caller's turns, then the agent's: the WER is scored channel by channel, since
    Whisper's segment times are too coarse to put turns 0.6 s apart in order (merging
    by time misordered short turns for both engines and doubled their WER)."""
    recordings = in_order(recordings, order)
    gap = round(gap_s * 16_000)
    length = sum(len(r.samples) + gap for r in recordings)
    samples = np.random.default_rng(order).normal(0.0, line_noise, (length, 2))
    at = 0
    for k, r in enumerate(recordings):
        samples[at:at + len(r.samples), k % 2] += r.samples
        at += len(r.samples) + gap
    samples = samples.astype(np.float32)
    path = folder / f"call-{order}.flac"
    sf.write(path, samples, 16_000)
    return Recording(path, samples, " ".join([r.reference for r in recordings[0::2]]
                                             + [r.reference for r in recordings[1::2]]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="5 repetitions (default: 3)")
    parser.add_argument("--long-form", action="store_true",
                        help="also transcribe the files joined into one recording, with "
                             "faster-whisper's BatchedInferencePipeline as a further engine")
    parser.add_argument("--stereo-calls", action="store_true",
                        help="also transcribe the files as the turns of one two-channel call "
                             "recording (caller and agent channels)")
    parser.add_argument("--per-file", action="store_true",
                        help="also time the faster-whisper backend alone on each file "
                             "(the batch path before packing)")
    parser.add_argument("--full-window", action="store_true",
                        help="also run the batch path with Whisper's full 30-s encoder window "
                             "(asr.context_s = 30), side by side")
    parser.add_argument("--packed", action="store_true",
                        help="also run the batch path with asr.pack (several recordings' "
                             "speech in shared 30-s windows), side by side")
    parser.add_argument("--repetitions", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for each engine in total (default: every usable core)")
    parser.add_argument("--workers", type=int, default=0,
                        help="batch path worker processes (default: what voicedesk "
                             "transcribe picks for these threads)")
    parser.add_argument("--model", default=None, help="asr.model (default: the configured one)")
    parser.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    config = load_config()
    store = ModelStore(config.models_dir)
    usable = cpu_cores()
    threads = args.threads or usable or 1
    model = args.model or config.asr.model
    repetitions = args.repetitions or (5 if args.full else 3)
    load_before = os.getloadavg()
    measurements = []
    try:
        rows = listed_recordings(args.audio_dir)
        recordings = [Recording(path, load_audio(path).samples, ref) for path, ref in rows]
        workers = args.workers or plan_workers(0, len(recordings), threads)[0]
        language = config.asr.language
        context = config.asr.context_s
        window = [v for v, on in (("full-window", args.full_window), ("packed", args.packed))
                  if on]
        extra = (["per-file"] if args.per_file else []) + window

        def against(measured: dict[str, Any]) -> list[dict[str, Any]]:
            """Each variant against openai-whisper, and the default against each variant."""
            return [summary for v in window for summary in (
                summarise(measured, VARIANTS[v]), summarise(measured, "faster-whisper",
                                                            VARIANTS[v]))]
        batch = measure("separate recordings",
                        build_engines(model, threads, workers, language, extra, context),
                        config, store, [in_order(recordings, k) for k in range(repetitions)],
                        repetitions)
        comparisons = [summarise(batch, "faster-whisper")]
        if args.per_file:
            comparisons.append(summarise(batch, "faster-whisper file by file"))
        measurements.append((batch, comparisons + against(batch)))
        if args.long_form:
            with tempfile.TemporaryDirectory() as folder:
                orders = [[joined(recordings, Path(folder), k)] for k in range(repetitions)]
                long = measure("one joined recording",
                               build_engines(model, threads, 1, language,
                                             ["per-file", "pipeline"] + window, context),
                               config, store, orders, repetitions)
            measurements.append((long, [summarise(long, "faster-whisper"),
                                        summarise(long, "faster-whisper file by file"),
                                        summarise(long, "faster-whisper-batched"),
                                        summarise(long, "faster-whisper",
                                                  "faster-whisper file by file")]
                                 + against(long)))
        if args.stereo_calls:
            with tempfile.TemporaryDirectory() as folder:
                orders = [[stereo_call(recordings, Path(folder), k)] for k in range(repetitions)]
                calls = measure("one stereo call recording",
                                build_engines(model, threads, 1, language, window, context),
                                config, store, orders, repetitions)
            measurements.append((calls, [summarise(calls, "faster-whisper")] + against(calls)))
    except VoicedeskError as exc:
        print(f"asr_batch: {exc}", file=sys.stderr)
        return 1
    load_after = os.getloadavg()
    for measured, summaries in measurements:
        print_table(measured, summaries, repetitions)
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    if max(load_before[0], load_after[0]) > BUSY_LOAD * threads:
        say(f"warning: load average {load_before[0]:.1f} -> {load_after[0]:.1f} with "
            f"{threads} threads; other work shared the cores, so absolute figures are "
            f"pessimistic (the side-by-side ratios are the figures to trust)")
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": "full" if args.full else "quick",
        "model": model,
        "repetitions": repetitions,
        "files": [str(r.path.relative_to(args.audio_dir)) for r in recordings],
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "cpus_usable": usable,
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after],
                    "env": {k: v for k, v in sorted(os.environ.items())
                            if k.startswith(("OMP_", "KMP_", "MKL_", "CT2_"))},
                    "python": platform.python_version()},
        "versions": {p: version(p) for p in ("faster-whisper", "ctranslate2", "openai-whisper",
                                              "torch", "numpy")},
        "measurements": [{**{k: v for k, v in measured.items() if k != "seconds"},
                          "comparisons": summaries} for measured, summaries in measurements],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
