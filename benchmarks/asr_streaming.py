"""Streaming ASR latency and accuracy, against one offline pass over the same audio.

Run from the repository root::

    python benchmarks/asr_streaming.py           # quick: a few minutes on 2 cores
    python benchmarks/asr_streaming.py --full    # every recording, more runs

It prints a table (medians over runs) and writes every figure, per run, as
JSON (``--json``, default ``benchmarks/results/asr_streaming.json``).

The inputs are callers' turns: each example call (``examples/*.flac``) is
split into its turns with the project's VAD and endpointer (``vad`` config:
webrtcvad, 700 ms of silence ends a turn), spans closer than 2 s merged, and
the turns must match the lines of its ``.txt``; each recording under
``../shared/data/asr/dev`` is one turn, followed by 1 s of silence so the
endpointer can fire. A turn's audio runs from the endpointer's start (speech
onset less its padding) to the moment the endpoint fires: exactly what a
call loop pushes.

The clock is simulated, so a run takes less than real time and is not
disturbed by sleeping. Frames (20 ms) *arrive* at their audio time. The
loop pushes every frame that has arrived, then calls ``poll()``; a Whisper
pass advances the clock by its measured wall time, during which further
frames queue up and are pushed after it, as in a real loop running the pass
in an executor. When no pass is due the clock waits for the next frame. The
endpoint fires when its frame arrives; ``end_turn()`` starts then, or when a
pass still running ends, and its measured time is added. Every latency is
therefore audio time plus processing time, for one call with the
transcriber's own threads. Wall time also counts whatever else the machine
runs, so the table prints the load average and each Whisper pass's time:
latencies scale with the pass time, and a busy machine inflates both.

Figures, per turn, pooled over turns:

* first partial: from speech onset (VAD start plus its padding) to the
  first non-empty ``Partial``.
* confirmation: from a word's end (its own Whisper time) to the
  ``Confirmed`` event holding it; words first confirmed by ``end_turn`` are
  left out, since they wait for the endpoint, not for agreement.
* final: from the endpoint to the ``Final`` (the target applies to turns up
  to 10 s).
* WER: pooled over all turns, after Whisper's ``EnglishTextNormalizer``
  (``*`` -> star, ``#`` -> pound first, as SPEECH.md says) and jiwer, through
  ``asr.evaluation``, so it is the same figure ``voicedesk`` reports elsewhere.
  "streamed" is the concatenated ``Confirmed`` words of each turn (the
  stream's transcript, including what ``end_turn`` confirms), "final" the
  ``Final`` text, "offline" one ``transcribe`` of the same turn audio.

Two loops run side by side, turn by turn, so drift on a shared machine
hits both: ``vad-hints`` passes the loop's 20 ms webrtcvad decision with
each frame (the final pass is taken in the pause before the endpoint), and
``no-hints`` does not (``end_turn`` runs the final pass). The VAD decisions
are computed before the clock starts: they are the VAD stage's cost.

Streaming passes decode without temperature fallback (it cost 3-4 normal
passes on speech cut mid-word); the offline baseline keeps the backend's
default, fallback included.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import spread
from tqdm import tqdm

from asr.agreement import join_words
from asr.audio import SPEECH_RATE, Audio, load_audio
from asr.evaluation import normalize, word_errors
from asr.streaming import Confirmed, Final, Partial, StreamingOptions, StreamingTranscriber
from asr.transcriber import QuickTranscriber, Transcriber, create_transcriber
from asr.transcript import Transcript, Word
from voice.vad import SpeechSpan, WebRtcVad, split_turns
from voicedesk.config import Config, load_config
from voicedesk.errors import VoicedeskError
from voicedesk.models.prepare import ModelStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEV_DIR = ROOT / ".." / "shared" / "data" / "asr" / "dev"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "asr_streaming.json"
FRAME_S = 0.02
FRAME = int(SPEECH_RATE * FRAME_S)
TURN_GAP_S = 2.0  # VAD spans closer than this are one turn (example gaps are 3 s)
TAIL_S = 1.0  # silence after a dev recording, so the endpointer can fire
TARGET_TURN_S = 10.0  # the final-latency target applies to turns up to this long
MODES = ("vad-hints", "no-hints")
TARGETS = {"first_partial_s": 1.0, "final_s_le10": 0.25, "wer_gap_points": 1.0}


@dataclass(frozen=True)
class Plan:
    """Quick fits a few minutes on 2 cores; full is for reports."""

    mode: str
    dev_files: int | None  # None: every dev recording
    runs: int


QUICK = Plan("quick", dev_files=1, runs=3)
FULL = Plan("full", dev_files=None, runs=5)


@dataclass(frozen=True)
class Turn:
    """A caller's turn as the loop pushes it; times from the turn's first sample."""

    name: str
    samples: np.ndarray  # from the endpointer's start to its endpoint
    onset_s: float
    speech_s: float  # length of the speech, onset to VAD end
    reference: str
    voiced: tuple[bool, ...]  # the loop's 20 ms VAD decision, frame by frame

    @property
    def endpoint_s(self) -> float:
        return len(self.samples) / SPEECH_RATE


@dataclass
class TurnRun:
    """What one loop made of one turn, and when."""

    first_partial_s: float | None = None
    confirm_s: list[float] = field(default_factory=list)
    final_s: float = 0.0
    streamed: str = ""
    final: str = ""
    passes: int = 0
    pass_s: list[float] = field(default_factory=list)  # each Whisper pass's wall time
    final_pass: bool = False  # whether end_turn had to run a pass


class TimedTranscriber:
    """The transcriber under test, timing each pass: contention on a shared machine shows."""

    def __init__(self, inner: Transcriber) -> None:
        self.inner = inner
        self.name = inner.name
        self.durations: list[float] = []

    def transcribe(self, samples: np.ndarray, prompt: str | None = None,
                   fallback: bool = True) -> Transcript:
        started = time.perf_counter()
        try:
            return self.inner.transcribe(samples, prompt, fallback)
        finally:
            self.durations.append(time.perf_counter() - started)

    def quick_pass(self, samples: np.ndarray, prompt: str | None = None) -> Transcript:
        started = time.perf_counter()
        try:
            if isinstance(self.inner, QuickTranscriber):
                return self.inner.quick_pass(samples, prompt)
            return self.inner.transcribe(samples, prompt, False)
        finally:
            self.durations.append(time.perf_counter() - started)


# ---- inputs ---------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"asr_streaming: {message}", file=sys.stderr, flush=True)


def make_turn(name: str, audio: Audio, spans: Sequence[SpeechSpan], reference: str,
              padding_s: float, vad: WebRtcVad) -> Turn:
    start = spans[0].start
    samples = audio.slice(start, spans[-1].endpoint)
    end = round(spans[-1].endpoint * SPEECH_RATE) - round(start * SPEECH_RATE)
    if len(samples) < end:  # the endpoint fell in the padding past the file's end
        samples = np.concatenate([samples, np.zeros(end - len(samples), np.float32)])
    voiced = tuple(vad.is_speech(samples[i:i + FRAME], SPEECH_RATE) if i + FRAME <= len(samples)
                   else False for i in range(0, len(samples), FRAME))
    # The endpointer starts a turn its padding before the speech; at the file's start
    # that padding is clipped, and the first voiced frame is the best guess.
    onset = padding_s if start > 0 else min(padding_s, FRAME_S * voiced.index(True)
                                            if True in voiced else 0.0)
    speech = spans[-1].end - padding_s - start - onset
    return Turn(name, samples, onset, speech, reference, voiced)


def group(spans: Sequence[SpeechSpan]) -> list[list[SpeechSpan]]:
    groups: list[list[SpeechSpan]] = []
    for span in spans:
        if groups and span.start - groups[-1][-1].end < TURN_GAP_S:
            groups[-1].append(span)
        else:
            groups.append([span])
    return groups


def example_turns(config: Config, vad: WebRtcVad) -> list[Turn]:
    turns: list[Turn] = []
    for path in sorted(EXAMPLES.glob("*.flac")):
        lines = [x for x in path.with_suffix(".txt").read_text().splitlines() if x.strip()]
        audio = load_audio(path)
        groups = group(split_turns(audio, config.vad))
        if len(groups) != len(lines):
            raise VoicedeskError(f"{path.name}: the VAD found {len(groups)} turns but "
                                 f"{path.with_suffix('.txt').name} has {len(lines)} lines; "
                                 f"check the recording with examples/check_examples.py")
        for i, (spans, line) in enumerate(zip(groups, lines, strict=True), 1):
            turns.append(make_turn(f"{path.stem}#{i}", audio, spans, line,
                                   config.vad.padding_ms / 1000, vad))
    return turns


def dev_references(folder: Path) -> dict[Path, str]:
    refs: dict[Path, str] = {}
    for tsv in sorted(folder.rglob("transcripts.tsv")):
        for line in tsv.read_text().splitlines():
            name, _, text = line.partition("\t")
            if text.strip() and (tsv.parent / name).is_file():
                refs[tsv.parent / name] = text.strip()
    return refs




def dev_turns(config: Config, vad: WebRtcVad, folder: Path, count: int | None) -> list[Turn]:
    if not folder.is_dir():
        raise VoicedeskError(f"dev recordings folder {folder} does not exist; pass --dev-dir")
    refs = dev_references(folder)
    turns: list[Turn] = []
    for path in spread(sorted(refs), count):
        audio = load_audio(path)
        padded = Audio(np.concatenate([audio.samples, np.zeros(int(TAIL_S * SPEECH_RATE),
                                                                np.float32)]), SPEECH_RATE)
        spans = split_turns(padded, config.vad)
        if not spans:
            say(f"skipping {path.name}: the VAD hears no speech in it")
            continue
        turns.append(make_turn(f"{path.parent.name}/{path.name}", padded, spans, refs[path],
                               config.vad.padding_ms / 1000, vad))
    return turns


# ---- one turn through the simulated loop -----------------------------------------------


def stream_turn(stream: StreamingTranscriber, timer: TimedTranscriber, turn: Turn,
                hints: bool) -> TurnRun:
    """Push the turn at its audio pace on a simulated clock (see the module docstring)."""
    stream.reset(at=0.0)
    timer.durations.clear()
    run = TurnRun()
    streamed: list[Word] = []
    now = 0.0
    frames = len(turn.voiced)
    k = 0
    while k < frames:
        now = max(now, (k + 1) * FRAME_S)  # wait for the next frame if nothing is queued
        while k < frames and (k + 1) * FRAME_S <= now + 1e-9:
            stream.push(turn.samples[k * FRAME:(k + 1) * FRAME], turn.voiced[k] if hints
                        else None)
            k += 1
        started = time.perf_counter()
        events = stream.poll()
        now += time.perf_counter() - started
        for event in events:
            if isinstance(event, Partial) and event.text and run.first_partial_s is None:
                run.first_partial_s = now - turn.onset_s
            elif isinstance(event, Confirmed):
                streamed += event.words
                run.confirm_s += [now - w.end for w in event.words]
    run.passes = stream.passes
    called = max(now, turn.endpoint_s)
    before = len(timer.durations)
    started = time.perf_counter()
    events = stream.end_turn()
    run.final_s = called + time.perf_counter() - started - turn.endpoint_s
    run.final_pass = len(timer.durations) > before
    run.pass_s = list(timer.durations)
    for event in events:
        if isinstance(event, Confirmed):
            streamed += event.words
        elif isinstance(event, Final):
            run.final = event.text
    run.streamed = join_words(streamed)
    return run


# ---- scoring --------------------------------------------------------------------------


def pooled_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Percent, errors over reference words of all turns: the project's WER (asr.evaluation)."""
    errors = [word_errors(normalize(r), normalize(h))
              for r, h in zip(references, hypotheses, strict=True)]
    return sum(errors[1:], errors[0]).wer


def pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def summarise(turns: Sequence[Turn], runs: Sequence[TurnRun],
              offline: Sequence[str]) -> dict[str, Any]:
    refs = [t.reference for t in turns]
    firsts = [r.first_partial_s for r in runs if r.first_partial_s is not None]
    confirms = [s for r in runs for s in r.confirm_s]
    finals = [r.final_s for r in runs]
    short = [r.final_s for t, r in zip(turns, runs, strict=True) if t.speech_s <= TARGET_TURN_S]
    passes = [s for r in runs for s in r.pass_s]
    wer_streamed = pooled_wer(refs, [r.streamed for r in runs])
    wer_offline = pooled_wer(refs, offline)
    return {
        "first_partial_s": pct(firsts, 50),
        "first_partial_s_p90": pct(firsts, 90),
        "turns_without_partial": len(runs) - len(firsts),
        "confirm_s": pct(confirms, 50),
        "confirm_s_p90": pct(confirms, 90),
        "final_s": pct(finals, 50),
        "final_s_p90": pct(finals, 90),
        "final_s_le10": pct(short, 50),
        "final_s_le10_p90": pct(short, 90),
        "wer_streamed": round(wer_streamed, 2),
        "wer_final": round(pooled_wer(refs, [r.final for r in runs]), 2),
        "wer_offline": round(wer_offline, 2),
        "wer_gap_points": round(wer_streamed - wer_offline, 2),
        "finals_after_endpoint_pass": sum(r.final_pass for r in runs),
        "passes_per_audio_s": round(len(passes) / sum(t.endpoint_s for t in turns), 3),
        "pass_s": pct(passes, 50),
        "pass_s_p90": pct(passes, 90),
    }


# ---- report ---------------------------------------------------------------------------


def machine_info(config: Config, plan: Plan, options: StreamingOptions) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    versions = {}
    for package in ("faster-whisper", "ctranslate2", "openai-whisper", "jiwer"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": plan.mode,
        "runs": plan.runs,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "asr": f"{config.asr.backend} {config.asr.model} {config.asr.compute_type} "
               f"beam {config.asr.beam_size} threads {config.asr.threads or os.cpu_count()}",
        "options": options.__dict__,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "versions": versions,
    }


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


ROWS = (  # label, key, p90 key, target key
    ("first partial after onset, s", "first_partial_s", "first_partial_s_p90", "first_partial_s"),
    ("word end to confirmed, s", "confirm_s", "confirm_s_p90", None),
    ("endpoint to final, s (all)", "final_s", "final_s_p90", None),
    ("endpoint to final, s (<=10 s)", "final_s_le10", "final_s_le10_p90", "final_s_le10"),
    ("WER streamed (confirmed) %", "wer_streamed", None, None),
    ("WER final %", "wer_final", None, None),
    ("WER offline %", "wer_offline", None, None),
    ("WER streamed - offline, pts", "wer_gap_points", None, "wer_gap_points"),
    ("finals needing a pass after endpoint", "finals_after_endpoint_pass", None, None),
    ("Whisper passes per audio second", "passes_per_audio_s", None, None),
    ("one Whisper pass, s", "pass_s", "pass_s_p90", None),
)


def render_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"voicedesk streaming ASR ({m['mode']}, median of {m['runs']} runs), {m['date']}",
             f"{m['cpu']}: {m['cpus']} CPUs, load average {m['load_average_1min']} at start, "
             f"{m['load_average_1min_end']} at end; {m['asr']}",
             f"{results['turns']} turns, {results['audio_s']} s of turn audio; options "
             + ", ".join(f"{k}={v}" for k, v in m["options"].items()), ""]
    header = ["metric"] + [f"{mode} median" for mode in MODES] + [f"{mode} p90" for mode in
                                                                   MODES] + ["target"]
    rows = [header]
    for label, key, p90_key, target in ROWS:
        rows.append([label]
                    + [fmt(results[mode][key]) for mode in MODES]
                    + [fmt(results[mode][p90_key]) if p90_key else "-" for mode in MODES]
                    + [f"<= {TARGETS[target]}" if target else "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- entry point ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = StreamingOptions()
    parser = argparse.ArgumentParser(description="Streaming ASR latency and WER on this machine.")
    parser.add_argument("--full", action="store_true",
                        help="every dev recording and more runs (default: quick)")
    parser.add_argument("--runs", type=int, default=None, help="override the number of runs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"results file (default: {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--dev-dir", type=Path, default=DEV_DIR,
                        help="dev recordings with transcripts.tsv files")
    parser.add_argument("--config", type=Path, default=None,
                        help="a voicedesk.toml (default: the usual lookup and VOICEDESK_* env)")
    parser.add_argument("--min-chunk-s", type=float, default=defaults.min_chunk_s)
    parser.add_argument("--first-chunk-s", type=float, default=defaults.first_chunk_s)
    parser.add_argument("--pause-s", type=float, default=defaults.pause_s)
    return parser.parse_args(argv)




def turn_figures(run: TurnRun) -> dict[str, Any]:
    return {"first_partial_s": None if run.first_partial_s is None
            else round(run.first_partial_s, 3),
            "final_s": round(run.final_s, 3), "passes": len(run.pass_s),
            "streamed": run.streamed, "final": run.final}


def measure(transcriber: Transcriber, options: StreamingOptions, turns: Sequence[Turn],
            plan: Plan) -> dict[str, Any]:
    offline = [transcriber.transcribe(t.samples).text for t in turns]
    timer = TimedTranscriber(transcriber)
    stream = StreamingTranscriber(timer, options)
    per_run: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tqdm(total=plan.runs * len(turns) * len(MODES), desc="streaming", unit="turn",
              file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        for _ in range(plan.runs):
            runs: dict[str, list[TurnRun]] = {mode: [] for mode in MODES}
            for turn in turns:
                for mode in MODES:
                    runs[mode].append(stream_turn(stream, timer, turn,
                                                  hints=mode == "vad-hints"))
                    bar.update()
            for mode in MODES:
                per_run[mode].append(summarise(turns, runs[mode], offline))
    out: dict[str, Any] = {"turns": len(turns),
                           "audio_s": round(sum(t.endpoint_s for t in turns), 1)}
    for mode in MODES:
        keys = per_run[mode][0].keys()
        out[mode] = {k: (round(float(np.median([r[k] for r in per_run[mode]
                                                 if r[k] is not None])), 3)
                         if any(r[k] is not None for r in per_run[mode]) else None)
                     for k in keys}
        out[mode]["runs"] = per_run[mode]
    out["turns_last_run"] = {  # for reading what the medians and the WER are made of
        t.name: {"speech_s": round(t.speech_s, 2), "reference": t.reference, "offline": text,
                 **{mode: turn_figures(runs[mode][i]) for mode in MODES}}
        for i, (t, text) in enumerate(zip(turns, offline, strict=True))}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = FULL if args.full else QUICK
    if args.runs:
        plan = Plan(plan.mode, plan.dev_files, args.runs)
    try:
        config = load_config(args.config)
        options = StreamingOptions(min_chunk_s=args.min_chunk_s,
                                   first_chunk_s=args.first_chunk_s, pause_s=args.pause_s)
        vad = WebRtcVad(config.vad.aggressiveness, frame_ms=int(FRAME_S * 1000))
        turns = example_turns(config, vad) + dev_turns(config, vad, args.dev_dir.resolve(),
                                                        plan.dev_files)
        say(f"{len(turns)} turns; loading {config.asr.backend} {config.asr.model}")
        transcriber = create_transcriber(config.asr, ModelStore(config.models_dir))
        transcriber.transcribe(turns[0].samples)  # first-call costs are not streaming's
        started = time.perf_counter()
        results: dict[str, Any] = {"machine": machine_info(config, plan, options)}
        results.update(measure(transcriber, options, turns, plan))
        results["machine"]["wall_s"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    except VoicedeskError as exc:
        print(f"asr_streaming: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asr_streaming: interrupted; nothing written", file=sys.stderr)
        return 130
    print(render_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {args.json} after {results['machine']['wall_s']} s of measuring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
