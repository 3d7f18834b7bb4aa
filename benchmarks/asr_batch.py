"""Batch ASR throughput: faster-whisper (int8) against openai-whisper (fp32), side by side.

Run from the repository root::

    python benchmarks/asr_batch.py            # quick: 4 recordings, 3 repetitions
    python benchmarks/asr_batch.py --full     # all 17 dev recordings, 5 repetitions
    python benchmarks/asr_batch.py --long-form   # also: the same audio as one recording

It prints a table and writes the figures as JSON (``--json``, default
``benchmarks/results/asr_batch.json``). The issue's target: faster-whisper
transcribes at least 5x as much audio per wall-clock second as openai-whisper,
with an equal or lower WER.

Why it is measured this way:

* SAME weights: openai-whisper runs the checkpoint that ``ModelStore.whisper_openai``
  converts from the very CTranslate2 folder faster-whisper loads, so the only
  differences are the engine and the arithmetic (int8 against fp32). Both are
  built by ``create_transcriber`` with the project's decoding options (greedy,
  temperature 0, word timestamps, no conditioning on earlier text, the same
  no-speech rule), so the figures are those of the code a call runs.
* SAME threads: both get ``--threads`` (default: every core the process may use).
* Side by side: each repetition transcribes the whole batch with one engine,
  then with the other, alternating which goes first, so a neighbour's load on a
  shared machine hits both alike. Throughput is audio seconds per wall second of
  the median repetition; the ratio is also given as the median of the per-
  repetition ratios, which cancels slow drifts.
* Preparation (hash checks, conversion), loading and one warm-up file per engine
  happen before any clock starts; decoding the audio files too.
* ``--long-form`` adds a second measurement on one recording made of the same
  files with a second of silence between them, the shape of a call recording.
  There faster-whisper's ``BatchedInferencePipeline`` (VAD chunks packed into
  30-s windows, 8 windows per encoder batch) can run too: it is not what a call
  uses, but it is the lever the issue names for closing a throughput gap, so
  its effect is measured rather than assumed.
* WER: Whisper's EnglishTextNormalizer on reference and hypothesis, after
  mapping ``*`` to "star" and ``#`` to "pound" (phone menus say them and the
  normaliser would drop them), then jiwer over the whole batch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import cpu_model, spread, version

from asr.audio import load_audio
from asr.transcriber import Transcriber, create_transcriber
from asr.transcript import Segment, Transcript
from voicedesk.config import AsrConfig, load_config
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
    batched: bool = False  # faster-whisper's BatchedInferencePipeline instead of the backend


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




def run_batch(transcriber: Transcriber, recordings: Sequence[Recording]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    texts = [transcriber.transcribe(r.samples).text for r in recordings]
    return time.perf_counter() - started, texts






def measure(title: str, engines: Sequence[Engine], store: ModelStore,
            recordings: Sequence[Recording], repetitions: int) -> dict[str, Any]:
    transcribers: dict[str, Transcriber] = {}
    load_s: dict[str, float] = {}
    for engine in engines:
        say(f"{title}: loading {engine.label} ({engine.config.compute_type}, beam "
            f"{engine.config.beam_size}, {engine.config.threads} threads)")
        started = time.perf_counter()
        transcribers[engine.label] = (
            BatchedFasterWhisper(store.whisper_ct2(engine.config.model), engine.config)
            if engine.batched else create_transcriber(engine.config, store))
        load_s[engine.label] = time.perf_counter() - started
        transcribers[engine.label].transcribe(recordings[0].samples)  # warm-up, untimed
    seconds: dict[str, list[float]] = {e.label: [] for e in engines}
    texts: dict[str, list[str]] = {}
    for rep in range(repetitions):
        order = engines if rep % 2 == 0 else list(reversed(engines))
        for engine in order:
            spent, hypotheses = run_batch(transcribers[engine.label], recordings)
            seconds[engine.label].append(spent)
            texts.setdefault(engine.label, hypotheses)  # greedy: every repetition is the same
            say(f"{title}: repetition {rep + 1}/{repetitions}: {engine.label} {spent:.2f} s")
    audio_s = sum(r.duration for r in recordings)
    references = [r.reference for r in recordings]
    rows = {}
    for engine in engines:
        wall = float(np.median(seconds[engine.label]))
        rows[engine.label] = {
            "backend": engine.config.backend,
            "compute_type": engine.config.compute_type,
            "beam_size": engine.config.beam_size,
            "threads": engine.config.threads,
            "weights": getattr(transcribers[engine.label], "model_ref", ""),
            "load_s": round(load_s[engine.label], 3),
            "wall_s": [round(s, 3) for s in seconds[engine.label]],
            "wall_s_median": round(wall, 3),
            "audio_s_per_s": round(audio_s / wall, 2),
            "rtf": round(wall / audio_s, 4),
            "wer": round(corpus_wer(references, texts[engine.label]), 4),
            "hypotheses": texts[engine.label],
        }
    return {"title": title, "files": len(recordings), "audio_s": round(audio_s, 2),
            "engines": rows, "seconds": seconds}


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
    header = (f"{'engine':<22} {'compute':<8} {'beam':>4} {'threads':>7} {'audio s':>8} "
              f"{'wall s':>8} {'audio s/s':>10} {'RTF':>7} {'WER':>7}")
    print(f"\n{measured['title']}: {measured['files']} recording(s), median of {repetitions} "
          f"repetitions, same weights and audio")
    print(header)
    print("-" * len(header))
    for label, row in measured["engines"].items():
        print(f"{label:<22} {row['compute_type']:<8} {row['beam_size']:>4} {row['threads']:>7} "
              f"{measured['audio_s']:>8.1f} {row['wall_s_median']:>8.2f} "
              f"{row['audio_s_per_s']:>10.2f} {row['rtf']:>7.3f} {row['wer']:>7.2%}")
    for summary in summaries:
        verdict = ("met" if summary["ratio_target_met"]
                   else f"missed by {summary['shortfall']:.0%}")
        print(f"{summary['engine']} / {summary['against']}: {summary['throughput_ratio']:.2f}x "
              f"(paired median {summary['throughput_ratio_paired_median']:.2f}x), target "
              f">= {TARGET_RATIO:.0f}x {verdict}; WER equal or lower: "
              f"{'yes' if summary['wer_target_met'] else 'no'} "
              f"(between them {summary['wer_between_engines']:.2%})")


def build_engines(model: str, threads: int, language: str, batched: bool) -> list[Engine]:
    fast = AsrConfig(backend="faster-whisper", model=model, compute_type="int8", beam_size=1,
                     threads=threads, language=language)
    slow = AsrConfig(backend="openai-whisper", model=model, compute_type="float32",
                     beam_size=1, threads=threads, language=language)
    engines = [Engine("faster-whisper", fast), Engine("openai-whisper", slow)]
    if batched:
        engines.insert(1, Engine("faster-whisper-batched", fast, batched=True))
    return engines


def joined(recordings: Sequence[Recording]) -> Recording:
    """One call-like recording: the files in turn, a second of silence after each."""
    gap = np.zeros(16_000, dtype=np.float32)
    samples = np.concatenate([part for r in recordings for part in (r.samples, gap)])
    return Recording(Path("+".join(r.path.name for r in recordings)), samples,
                     " ".join(r.reference for r in recordings))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="every listed recording and 5 repetitions (default: 4 and 3)")
    parser.add_argument("--long-form", action="store_true",
                        help="also transcribe the files joined into one recording, with "
                             "faster-whisper's BatchedInferencePipeline as a third engine")
    parser.add_argument("--repetitions", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for both engines (default: every usable core)")
    parser.add_argument("--model", default=None, help="asr.model (default: the configured one)")
    parser.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    config = load_config()
    store = ModelStore(config.models_dir)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = args.threads or usable or 1
    model = args.model or config.asr.model
    repetitions = args.repetitions or (5 if args.full else 3)
    load_before = os.getloadavg()
    measurements = []
    try:
        rows = spread(listed_recordings(args.audio_dir), None if args.full else 4)
        recordings = [Recording(path, load_audio(path).samples, ref) for path, ref in rows]
        language = config.asr.language
        batch = measure("separate recordings", build_engines(model, threads, language, False),
                        store, recordings, repetitions)
        measurements.append((batch, [summarise(batch, "faster-whisper")]))
        if args.long_form:
            long = measure("one joined recording", build_engines(model, threads, language, True),
                           store, [joined(recordings)], repetitions)
            measurements.append((long, [summarise(long, "faster-whisper"),
                                        summarise(long, "faster-whisper-batched")]))
    except VoicedeskError as exc:
        print(f"asr_batch: {exc}", file=sys.stderr)
        return 1
    load_after = os.getloadavg()
    for measured, summaries in measurements:
        print_table(measured, summaries, repetitions)
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
