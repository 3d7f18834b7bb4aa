"""Each default stage of a call, measured side by side in one run: ASR, LLM, TTS.

Run from the repository root::

    python benchmarks/stages.py            # quick: a few minutes on 2 cores
    python benchmarks/stages.py --full     # every recording, more repetitions

It prints a table of medians (and p90 for latencies) and writes the same
figures as JSON (``--json``, default ``benchmarks/results/stages.json``).

Why each measurement is taken the way it is:

* Every engine is built through the project's own factories
  (``create_transcriber``, ``create_engine``, ``create_synthesizer``) with the
  effective configuration, threads included (0: all cores), so the figures
  are those of the code a call runs, not of a hand-tuned copy. Model files are
  prepared (joined, converted) before any clock starts: ``load_s`` is the cost
  of a process start, not of a first install. Each engine then runs once
  untimed, because first calls pay for lazy weight paging, kernel selection
  and allocator growth that a serving process pays only once; that first call
  is still reported as ``warmup_s``, since a cold start is what a restarted
  service feels.
* ASR: the real-time factor is total transcription time over total audio
  time, summed over every timed run. Whisper pads every input to a 30 s
  window, so a 1 s command costs nearly as much as a 10 s sentence and
  per-file RTFs spread widely; the pooled ratio is the stable figure, and the
  per-file median/p90 RTF and per-file latency show the spread. Decoding and
  resampling the files happens before timing: that is I/O, not recognition.
* LLM: transformers (fp32) and CTranslate2 (``llm.compute_type``, int8) load
  the SAME checkpoint (``ModelStore.llm_hf`` is the source ``llm_ct2``
  converts), decode greedily with the pipeline's options, and run
  interleaved (prompt by prompt, engine by engine), so drift on a shared
  machine hits both alike and the ratio stays fair. Time to first token is
  measured through ``LLMEngine.stream``, from the call to the first text
  piece, which is the moment the pipeline could start speaking.
  CTranslate2 yields every token as a piece; transformers' streamer
  releases letters at once but holds text ending in punctuation until the
  next space, so a reply that opens with a quote or a symbol reaches the
  caller a token or two later. That is the engine's real latency, and it
  shows in the p90 rather than being corrected away. Decode speed is
  (tokens - 1) / (end of stream - first piece): the prefill is excluded, and
  the end-of-sequence step is inside the window for both engines. Tokens
  are counted by re-encoding the reply with the engine's own tokenizer
  (``engine.encode``), not by counting stream pieces: CTranslate2 yields one
  piece per token but transformers' streamer merges tokens into words, so
  pieces would undercount it and skew the ratio. Time per token is reported
  with its p90 because on a small machine the OpenMP thread hand-off makes
  the decode rate jump between a fast and a slow mode from run to run; the
  spread is part of the result, not noise to hide.
* The machine's load average (before and after) and the threading
  variables in effect (OMP_*, KMP_*, MKL_*, VOICEDESK_*) are recorded with
  the figures: another process on a 2-core machine, or the OpenMP wait
  policy (``import voicedesk`` sets OMP_WAIT_POLICY=PASSIVE unless the
  environment chose one), moves them more than most engine options do.
* TTS: Piper's real-time factor is synthesis time over the duration of the
  audio it produced; time to first audio is from the call to the first chunk,
  which Piper yields per sentence, so a two-sentence reply can start playing
  after its first sentence.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import cpu_model, spread, version
from tqdm import tqdm

from asr.audio import Audio, load_audio
from asr.transcriber import create_transcriber
from nlu.llm.engine import GenerationOptions, LLMEngine, Message, create_engine
from voice.tts import create_synthesizer
from voicedesk.config import Config, load_config
from voicedesk.errors import VoicedeskError
from voicedesk.models.prepare import ModelStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUDIO_DIR = ROOT / ".." / "shared" / "data" / "asr" / "dev"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "stages.json"
AUDIO_SUFFIXES = (".flac", ".wav")
STAGES = ("asr", "llm", "tts")
THREAD_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "CT2_", "VOICEDESK_")
BUSY_LOAD = 0.5  # 1-minute load average above which other work is skewing the figures

# Fixed rather than read from nlu/domain, so figures stay comparable across
# commits that edit the domain pack. Close to the pipeline's reply prompt.
SYSTEM_PROMPT = (
    "You are Joe, a friendly phone agent at Northwind Telecom. You are speaking on the "
    "phone, so answer in one or two short, plain sentences with no lists."
)
CALLER_PROMPTS = (
    "Hi, my internet has been down since this morning. Can you help me?",
    "Why is my bill so much higher this month?",
    "I'm travelling to Spain next week. Will my phone work there?",
    "How much data do I have left on my plan?",
    "I want to cancel my contract and switch to another provider.",
)
WARMUP_PROMPT = "Hello, I have a question about my account."

# Replies in the shape the assistant speaks (from nlu/domain/telecom/intents.yaml).
REPLY_SENTENCES = (
    "I can check your balance for you. Could you give me your account number first?",
    "I'm sorry your bill looks wrong.",
    "I can help you change your plan. Which plan are you interested in?",
    "Thank you for calling Northwind Telecom. How can I help you today?",
)
WARMUP_SENTENCE = "Hello, this is Joe."


@dataclass(frozen=True)
class Plan:
    """How much to measure: quick fits a few minutes on 2 cores, full is for reports."""

    mode: str
    asr_files: int | None  # None: every file
    asr_reps: int
    llm_reps: int
    tts_reps: int

    @classmethod
    def quick(cls) -> Plan:
        return cls(mode="quick", asr_files=5, asr_reps=2, llm_reps=3, tts_reps=3)

    @classmethod
    def full(cls) -> Plan:
        return cls(mode="full", asr_files=None, asr_reps=5, llm_reps=10, tts_reps=10)


# ---- small helpers -------------------------------------------------------------------


def say(message: str) -> None:
    print(f"stages: {message}", file=sys.stderr, flush=True)


def progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, leave=False,
                dynamic_ncols=True)


def median(values: Sequence[float]) -> float:
    return float(np.median(values))


def p90(values: Sequence[float]) -> float:
    return float(np.percentile(values, 90))


def timed(build: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = build()
    return value, time.perf_counter() - started






def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def machine_info(config: Config, plan: Plan) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": plan.mode,
        "cpu": cpu_model(),
        "cpus": cpus,
        "cpus_usable": usable,
        # The engines resolve 0 with os.cpu_count(); this is what they were given.
        "threads": {
            "asr": config.asr.threads or cpus,
            "llm": config.llm.threads or cpus,
            "tts": "onnxruntime default",
        },
        "cuda": cuda_available(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREAD_ENV_PREFIXES)},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: version(p) for p in ("voicedesk", "faster-whisper", "ctranslate2",
                                              "torch", "transformers", "piper-tts",
                                              "onnxruntime")},
    }


# ---- ASR -----------------------------------------------------------------------------


def find_audio(audio_dir: Path) -> list[Path]:
    if not audio_dir.is_dir():
        raise VoicedeskError(f"audio folder {audio_dir} does not exist; pass --audio-dir with "
                             f"a folder of .flac or .wav recordings")
    files = sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise VoicedeskError(f"no .flac or .wav files under {audio_dir}; pass --audio-dir with "
                             f"a folder of recordings")
    return files




def bench_asr(config: Config, store: ModelStore, audio_dir: Path, plan: Plan) -> dict[str, Any]:
    files = spread(find_audio(audio_dir), plan.asr_files)
    recordings: list[Audio] = [load_audio(path) for path in files]
    store.whisper_ct2(config.asr.model)  # prepare outside the clock
    say(f"ASR: loading {config.asr.backend} {config.asr.model} ({config.asr.compute_type})")
    transcriber, load_s = timed(lambda: create_transcriber(config.asr, store))
    _, warmup_s = timed(lambda: transcriber.transcribe(recordings[0].samples))

    latencies: list[float] = []
    rtfs: list[float] = []
    spent = heard = 0.0
    with progress(plan.asr_reps * len(recordings), "ASR") as bar:
        for _ in range(plan.asr_reps):
            for audio in recordings:
                _, seconds = timed(lambda a=audio: transcriber.transcribe(a.samples))
                latencies.append(seconds)
                rtfs.append(seconds / audio.duration)
                spent += seconds
                heard += audio.duration
                bar.update()
    return {
        "backend": config.asr.backend,
        "model": config.asr.model,
        "compute_type": config.asr.compute_type,
        "beam_size": config.asr.beam_size,
        "load_s": round(load_s, 3),
        "warmup_s": round(warmup_s, 3),
        "files": len(recordings),
        "audio_s": round(sum(a.duration for a in recordings), 2),
        "repetitions": plan.asr_reps,
        "rtf": round(spent / heard, 4),
        "rtf_file_median": round(median(rtfs), 4),
        "rtf_file_p90": round(p90(rtfs), 4),
        "latency_ms_median": round(median(latencies) * 1000, 1),
        "latency_ms_p90": round(p90(latencies) * 1000, 1),
    }


# ---- LLM -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamRun:
    """One streamed reply: when its first piece and its end arrived, and its text."""

    ttft_s: float
    total_s: float
    text: str
    tokens: int

    @property
    def s_per_token(self) -> float | None:
        window = self.total_s - self.ttft_s
        if self.tokens < 2 or window <= 0:
            return None  # one token has no decode interval to measure
        return window / (self.tokens - 1)


def run_stream(engine: LLMEngine, messages: Sequence[Message],
               options: GenerationOptions) -> StreamRun:
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    stream: Iterator[str] = engine.stream(messages, options)
    for piece in stream:
        if first is None:
            first = time.perf_counter() - started
        pieces.append(piece)
    total = time.perf_counter() - started
    text = "".join(pieces)
    return StreamRun(ttft_s=total if first is None else first, total_s=total, text=text,
                     tokens=len(engine.encode(text)))


def chat(user: str) -> list[Message]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def summarise_llm(runs: Sequence[StreamRun], load_s: float, warmup_s: float) -> dict[str, Any]:
    steps = [s * 1000 for s in (run.s_per_token for run in runs) if s is not None]
    ttfts = [run.ttft_s * 1000 for run in runs]
    return {
        "load_s": round(load_s, 3),
        "warmup_s": round(warmup_s, 3),
        "ttft_ms": round(median(ttfts), 1),
        "ttft_ms_p90": round(p90(ttfts), 1),
        # The median rate is the rate of the median step time; p90 of the step
        # time is the slow tail, i.e. the 10th percentile of the rate.
        "tokens_per_s": round(1000 / median(steps), 1) if steps else None,
        "tokens_per_s_p10": round(1000 / p90(steps), 1) if steps else None,
        "ms_per_token": round(median(steps), 2) if steps else None,
        "ms_per_token_p90": round(p90(steps), 2) if steps else None,
        "tokens_per_reply": round(median([run.tokens for run in runs]), 1),
        "runs": len(runs),
    }


def bench_llm(config: Config, store: ModelStore, plan: Plan) -> dict[str, Any]:
    if cuda_available():
        say("warning: CUDA is visible, so transformers runs on the GPU while CTranslate2 "
            "runs on the CPU; hide the GPU (CUDA_VISIBLE_DEVICES=) for a like-for-like ratio")
    store.llm_ct2(config.llm.model, config.llm.compute_type)  # prepares llm_hf too
    options = GenerationOptions(max_new_tokens=config.llm.max_new_tokens, temperature=0.0)
    names = ("transformers", "ctranslate2")
    engines: dict[str, LLMEngine] = {}
    loads: dict[str, float] = {}
    warmups: dict[str, float] = {}
    for name in names:
        say(f"LLM: loading {config.llm.model} with {name}")
        engine_config = dataclasses.replace(config.llm, engine=name)
        engines[name], loads[name] = timed(lambda c=engine_config: create_engine(c, store))
        say(f"LLM: warming up {name}")
        warmups[name] = run_stream(engines[name], chat(WARMUP_PROMPT), options).total_s

    runs: dict[str, list[StreamRun]] = {name: [] for name in names}
    last_text: dict[str, dict[str, str]] = {name: {} for name in names}
    with progress(plan.llm_reps * len(CALLER_PROMPTS) * len(names), "LLM") as bar:
        for _ in range(plan.llm_reps):
            for prompt in CALLER_PROMPTS:
                for name in names:
                    run = run_stream(engines[name], chat(prompt), options)
                    runs[name].append(run)
                    last_text[name][prompt] = run.text
                    bar.update()

    result: dict[str, Any] = {
        "model": config.llm.model,
        "weights": {"transformers": engines["transformers"].model_ref,
                    "ctranslate2": engines["ctranslate2"].model_ref},
        "compute_type": {"transformers": "float32", "ctranslate2": config.llm.compute_type},
        "prompts": len(CALLER_PROMPTS),
        "repetitions": plan.llm_reps,
        "max_new_tokens": options.max_new_tokens,
        "repetition_penalty": options.repetition_penalty,
        "token_count": "engine.encode(reply text)",
        **{name: summarise_llm(runs[name], loads[name], warmups[name]) for name in names},
        # Greedy decoding is deterministic, so an int8 reply that differs from
        # the fp32 one is quantisation at work, not noise.
        "identical_replies": sum(last_text["transformers"][p] == last_text["ctranslate2"][p]
                                 for p in CALLER_PROMPTS),
    }
    hf, ct2 = result["transformers"], result["ctranslate2"]
    # Both read as "how many times faster CTranslate2 is": >1 favours CTranslate2.
    result["speedup_tokens_per_s"] = (round(ct2["tokens_per_s"] / hf["tokens_per_s"], 2)
                                      if hf["tokens_per_s"] and ct2["tokens_per_s"] else None)
    result["speedup_ttft"] = round(hf["ttft_ms"] / ct2["ttft_ms"], 2)
    return result


# ---- TTS -----------------------------------------------------------------------------


def bench_tts(config: Config, store: ModelStore, plan: Plan) -> dict[str, Any]:
    store.piper_voice(config.tts.voice)  # hash check outside the clock
    say(f"TTS: loading {config.tts.backend} {config.tts.voice}")
    synthesizer, load_s = timed(lambda: create_synthesizer(config.tts, store))
    _, warmup_s = timed(lambda: list(synthesizer.synthesize(WARMUP_SENTENCE)))

    firsts: list[float] = []
    rtfs: list[float] = []
    spent = spoken = 0.0
    with progress(plan.tts_reps * len(REPLY_SENTENCES), "TTS") as bar:
        for _ in range(plan.tts_reps):
            for text in REPLY_SENTENCES:
                started = time.perf_counter()
                first: float | None = None
                samples = 0
                for chunk in synthesizer.synthesize(text):
                    if first is None:
                        first = time.perf_counter() - started
                    samples += len(chunk)
                seconds = time.perf_counter() - started
                duration = samples / synthesizer.sample_rate
                if first is None or duration == 0:
                    raise VoicedeskError(f"TTS {config.tts.voice} produced no audio for "
                                         f"{text!r}; check the voice with `voicedesk models "
                                         f"list` and the tts section of `voicedesk config show`")
                firsts.append(first * 1000)
                rtfs.append(seconds / duration)
                spent += seconds
                spoken += duration
                bar.update()
    return {
        "backend": config.tts.backend,
        "voice": config.tts.voice,
        "sample_rate": synthesizer.sample_rate,
        "load_s": round(load_s, 3),
        "warmup_s": round(warmup_s, 3),
        "replies": len(REPLY_SENTENCES),
        "repetitions": plan.tts_reps,
        "rtf": round(spent / spoken, 4),
        "rtf_reply_median": round(median(rtfs), 4),
        "rtf_reply_p90": round(p90(rtfs), 4),
        "first_audio_ms": round(median(firsts), 1),
        "first_audio_ms_p90": round(p90(firsts), 1),
    }


# ---- report --------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def render_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    threads = m["threads"]
    lines = [
        f"voicedesk stages ({m['mode']}), {m['date']}",
        f"{m['cpu']}: {m['cpus']} CPUs ({m['cpus_usable']} usable); threads asr={threads['asr']}"
        f" llm={threads['llm']} tts={threads['tts']}; cuda={m['cuda']}",
        f"load average {m['load_average'][0]} at start, "
        f"{m.get('load_average_end', ['?'])[0]} at end; "
        + (" ".join(f"{k}={v}" for k, v in m["env"].items()) or "no threading variables set"),
        "",
    ]
    rows: list[tuple[str, str, str, str, str, str]] = [
        ("stage", "engine", "metric", "median", "p90", "n"),
    ]
    if "asr" in results:
        a = results["asr"]
        engine = f"{a['backend']} {a['model']} {a['compute_type']} b{a['beam_size']}"
        n = str(a["files"] * a["repetitions"])
        rows += [
            ("ASR", engine, "RTF (pooled)", fmt(a["rtf"], 4), "-", n),
            ("ASR", engine, "RTF per file", fmt(a["rtf_file_median"], 4),
             fmt(a["rtf_file_p90"], 4), n),
            ("ASR", engine, "latency ms per file", fmt(a["latency_ms_median"]),
             fmt(a["latency_ms_p90"]), n),
            ("ASR", engine, "load s", fmt(a["load_s"]), "-", "1"),
        ]
    if "llm" in results:
        llm = results["llm"]
        for name in ("transformers", "ctranslate2"):
            r = llm[name]
            engine = f"{name} {llm['compute_type'][name]}"
            n = str(r["runs"])
            rows += [
                ("LLM", engine, "TTFT ms", fmt(r["ttft_ms"]), fmt(r["ttft_ms_p90"]), n),
                ("LLM", engine, "decode tokens/s", fmt(r["tokens_per_s"], 1), "-", n),
                ("LLM", engine, "decode ms/token", fmt(r["ms_per_token"]),
                 fmt(r["ms_per_token_p90"]), n),
                ("LLM", engine, "tokens per reply", fmt(r["tokens_per_reply"]), "-", n),
                ("LLM", engine, "load s / warm-up s",
                 f"{fmt(r['load_s'])} / {fmt(r['warmup_s'])}", "-", "1"),
            ]
    if "tts" in results:
        t = results["tts"]
        engine = f"{t['backend']} {t['voice']}"
        n = str(t["replies"] * t["repetitions"])
        rows += [
            ("TTS", engine, "RTF (pooled)", fmt(t["rtf"], 4), "-", n),
            ("TTS", engine, "RTF per reply", fmt(t["rtf_reply_median"], 4),
             fmt(t["rtf_reply_p90"], 4), n),
            ("TTS", engine, "first audio ms", fmt(t["first_audio_ms"]),
             fmt(t["first_audio_ms_p90"]), n),
            ("TTS", engine, "load s", fmt(t["load_s"]), "-", "1"),
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for index, row in enumerate(rows):
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                  strict=True))]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    if "llm" in results:
        llm = results["llm"]
        lines += [
            "",
            f"CTranslate2 vs transformers, same weights ({llm['model']}): "
            f"decode {fmt(llm['speedup_tokens_per_s'], 2)}x tokens/s, "
            f"first token {fmt(llm['speedup_ttft'], 2)}x sooner; "
            f"identical greedy replies {llm['identical_replies']}/{llm['prompts']}",
        ]
    return "\n".join(lines)


# ---- entry point ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure ASR, LLM and TTS side by side on this machine.")
    parser.add_argument("--full", action="store_true",
                        help="every recording and more repetitions (default: quick)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help="where to write the results "
                             f"(default: {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--audio-dir", type=Path, default=DEFAULT_AUDIO_DIR,
                        help="recordings (.flac, .wav, searched recursively) for the ASR RTF")
    parser.add_argument("--config", type=Path, default=None,
                        help="a voicedesk.toml (default: the usual lookup and VOICEDESK_* env)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="measure only these stages")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.full() if args.full else Plan.quick()
    try:
        config = load_config(args.config)
        store = ModelStore(config.models_dir)
        results: dict[str, Any] = {"machine": machine_info(config, plan)}
        load = results["machine"]["load_average"][0]
        if load > BUSY_LOAD:
            say(f"warning: load average is {load} before starting; other work on this machine "
                f"will slow and scatter the figures")
        started = time.perf_counter()
        if "asr" in args.stages:
            results["asr"] = bench_asr(config, store, args.audio_dir.resolve(), plan)
        if "llm" in args.stages:
            results["llm"] = bench_llm(config, store, plan)
        if "tts" in args.stages:
            results["tts"] = bench_tts(config, store, plan)
        results["machine"]["wall_s"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    except VoicedeskError as exc:
        print(f"stages: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stages: interrupted; nothing written", file=sys.stderr)
        return 130
    print(render_table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    say(f"wrote {args.json} in {results['machine']['wall_s']} s of measuring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
