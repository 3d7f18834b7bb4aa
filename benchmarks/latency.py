"""Voice-to-voice latency of live calls through the real-time loop, on the defaults.

Run from the repository root::

    python benchmarks/latency.py                 # quick: 2 scripted calls, one at a time
    python benchmarks/latency.py --calls 8       # 8 calls at once (the concurrency target)
    python benchmarks/latency.py --full          # every scripted call of the suite, 3 rounds
    python benchmarks/latency.py --calls 8 --stagger 10   # calls ringing in over 10 s

Each call is a multi-turn script from the project's scenario suite
(``nlu/domain/telecom/scenarios.yaml``), spoken by espeak-ng (a voice unlike the
assistant's), played into an in-memory line at real-time pace, 20 ms at a
time, with the assistant's replies recorded on the same clock. Voice-to-voice
is measured on that recording: from the real end of the caller's speech in the
audio (not the endpoint event) to the first sample of the reply. The stages
come from the loop's own per-turn metrics (endpointing, final transcript, LLM
first token, first sentence, TTS first audio). Also reported: play-out gaps
inside a reply (the next sentence was not ready when the previous one ended)
and clock ticks that ran late, which together say whether any call's audio
stuttered.

Targets (issue: voice/ loop, 2-core machine): one call p50 <= 500 ms and
p95 <= 900 ms; 8 simultaneous calls p95 <= 1.5 s with no gaps or drops.
Writes ``--json`` (default ``benchmarks/results/latency.json``) with at least
``{"voice_to_voice_ms": {"p50": .., "p95": ..}, "calls": N}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import cpu_model, version, write_results  # noqa: E402

STAGES = ("endpoint_ms", "asr_final_ms", "llm_first_token_ms", "first_sentence_ms",
          "tts_first_audio_ms")


def scripted_calls(limit: int | None) -> list[tuple[str, list[str]]]:
    """Calls of two or more spoken turns from the scenario suite."""
    import yaml

    suite = yaml.safe_load((REPO / "nlu/domain/telecom/scenarios.yaml").read_text())
    calls = []
    for call in suite["calls"]:
        lines = [str(t["say"]) for t in call["turns"] if "say" in t]
        if len(lines) >= 2 and len(lines) == len(call["turns"]):
            calls.append((call["name"], lines))
    return calls if limit is None else calls[:limit]


def speak(lines: list[str], rate: int) -> list[np.ndarray]:
    from asr.audio import resample
    from nlu.scenarios import speakable
    from voice.espeak_tts import EspeakSynthesizer

    voice = EspeakSynthesizer("en-us+f5")
    return [resample(np.concatenate(list(voice.synthesize(speakable(line)))),
                     voice.sample_rate, rate) for line in lines]


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def run_calls(service: Any, scripts: list[list[np.ndarray]], rate: int,
                    names: list[str], offsets: list[float] | None = None
                    ) -> list[dict[str, Any]]:
    from voice.line import CallerScript, CallerTurn, MemoryLine

    async def one(i: int) -> dict[str, Any]:
        if offsets:
            await asyncio.sleep(offsets[i])  # calls ringing in at their own times
        line = MemoryLine(CallerScript([CallerTurn(a) for a in scripts[i]], reply_timeout_s=15),
                          rate, call_id=f"bench-{i}")
        outcome = await service.handle(line)
        recording = line.recording()
        v2v = [round((t.reply_start - t.speech_end) * 1000, 1) for t in recording.turns
               if t.reply_start is not None]
        turns = [t for t in outcome.turns if t.transcript]
        return {
            "name": names[i],
            "turns": len(recording.turns),
            "answered": len(v2v),
            "voice_to_voice_ms": v2v,
            "stages": {k: [t.latency_ms[k] for t in turns if k in t.latency_ms] for k in STAGES},
            "early_starts": sum(t.early_start for t in turns),
            "gaps": outcome.gaps,
            "late_ticks": recording.late_frames,
            "barge_ins": outcome.barge_ins,
            "transcripts": [t.transcript for t in turns],
            # where the time goes, on the line's clock (s): the caller's real speech end and
            # the reply's first sample as the line heard them; the loop's VAD speech end,
            # endpoint and its own voice-to-voice for the turns it answered
            "line_turns": [{"speech_end": round(t.speech_end, 3),
                            "reply_start": None if t.reply_start is None
                            else round(t.reply_start, 3)} for t in recording.turns],
            "loop_turns": [{"speech_end": round(t.speech_end, 3),
                            "endpoint": round(t.endpoint, 3),
                            "voice_to_voice_ms": t.latency_ms.get("voice_to_voice_ms")}
                           for t in turns],
        }

    return list(await asyncio.gather(*(one(i) for i in range(len(scripts)))))


def override_streaming(pairs: list[str]) -> dict[str, Any]:
    """Every call's streaming transcriber with these options changed (``--stream``)."""
    from dataclasses import fields, replace

    import voice.hearing as hearing
    from asr.streaming import StreamingOptions

    known = {f.name: f.type for f in fields(StreamingOptions)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in known:
            raise SystemExit(f"--stream {pair}: unknown option; known: {', '.join(known)}")
        default = getattr(StreamingOptions(), name)
        changes[name] = (value.lower() in ("1", "true", "yes", "on")
                         if isinstance(default, bool) else type(default)(value))
    if changes:
        base = hearing.StreamingTranscriber

        class Changed(base):  # type: ignore[misc, valid-type]
            def __init__(self, transcriber: Any, options: Any = None) -> None:
                super().__init__(transcriber, replace(options or StreamingOptions(), **changes))

        hearing.StreamingTranscriber = Changed  # type: ignore[misc]
    return changes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1, help="calls at once (default 1)")
    parser.add_argument("--rounds", type=int, help="batches of calls (default 2; --full 3)")
    parser.add_argument("--full", action="store_true", help="more scripts and rounds")
    parser.add_argument("--rate", type=int, default=8000, help="line rate (default 8000)")
    parser.add_argument("--stagger", type=float, default=0.0, metavar="S",
                        help="start each call of a batch after a random delay of up to S "
                             "seconds (fixed seed), as calls ring in; default 0: all at once, "
                             "in the same 20-ms frame (the worst case)")
    parser.add_argument("--stream", action="append", default=[], metavar="OPTION=VALUE",
                        help="a streaming option other than its default, for a side-by-side "
                             "run (asr.streaming.StreamingOptions; e.g. quick_answers=true)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/latency.json")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.full else 2)
    streaming = override_streaming(args.stream)

    from voice.assistant import Assistant
    from voice.service import CallService
    from voicedesk.config import load_config

    config = load_config()
    home = Path(tempfile.mkdtemp(prefix="voicedesk-latency-"))
    (home / "models").symlink_to(config.models_dir, target_is_directory=True)
    config.home = home  # a scratch store: benchmark calls never mix with real ones
    config.database.url = ""
    print("loading models ...", file=sys.stderr)
    assistant = Assistant.load(config)
    pool = scripted_calls(None)
    needed = args.calls * rounds
    chosen = [pool[i % len(pool)] for i in range(needed if args.full else max(needed, 2))]
    print(f"speaking {len(chosen)} scripted calls with espeak-ng ...", file=sys.stderr)
    audio = [speak(lines, args.rate) for _, lines in chosen]
    load_before = os.getloadavg()

    rng = np.random.default_rng(0)

    async def go() -> list[dict[str, Any]]:
        service = CallService(config, assistant)
        await service.start()
        results = []
        try:
            for r in range(0, len(chosen), args.calls):
                batch = list(range(r, min(r + args.calls, len(chosen))))
                print(f"calls {batch[0] + 1}-{batch[-1] + 1} of {len(chosen)} "
                      f"({len(batch)} at once) ...", file=sys.stderr)
                offsets = [float(x) for x in rng.uniform(0, args.stagger, len(batch))]
                results += await run_calls(service, [audio[i] for i in batch], args.rate,
                                           [chosen[i][0] for i in batch],
                                           offsets if args.stagger > 0 else None)
        finally:
            await service.stop()
        return results

    started = time.perf_counter()
    calls = asyncio.run(go())
    wall = time.perf_counter() - started
    v2v = [v for c in calls for v in c["voice_to_voice_ms"]]
    stages = {k: [v for c in calls for v in c["stages"][k]] for k in STAGES}
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "calls": args.calls,
        "stagger_s": args.stagger,
        "streaming_changed": streaming,
        "calls_total": len(calls),
        "line_rate": args.rate,
        "turns": sum(c["turns"] for c in calls),
        "answered": sum(c["answered"] for c in calls),
        "voice_to_voice_ms": {"p50": percentile(v2v, 50), "p95": percentile(v2v, 95),
                              "max": percentile(v2v, 100), "n": len(v2v)},
        "stages_ms": {k: {"p50": percentile(v, 50), "p95": percentile(v, 95)}
                      for k, v in stages.items()},
        "early_starts": sum(c["early_starts"] for c in calls),
        "gaps": sum(c["gaps"] for c in calls),
        "late_ticks": sum(c["late_ticks"] for c in calls),
        "targets": {"p50_ms": 500 if args.calls == 1 else None,
                    "p95_ms": 900 if args.calls == 1 else 1500},
        "machine": {"cpu": cpu_model(), "cpus_usable": len(os.sched_getaffinity(0)),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "versions": {p: version(p) for p in ("faster-whisper", "ctranslate2", "piper-tts",
                                             "webrtcvad-wheels", "numpy")},
        "models": assistant.describe(),
        "wall_s": round(wall, 1),
        "per_call": calls,
    }
    target = result["targets"]
    print(f"\n{'stage':<22}{'p50 ms':>10}{'p95 ms':>10}")
    for k, v in result["stages_ms"].items():
        print(f"{k:<22}{v['p50'] or '-':>10}{v['p95'] or '-':>10}")
    vv = result["voice_to_voice_ms"]
    print(f"{'voice_to_voice_ms':<22}{vv['p50'] or '-':>10}{vv['p95'] or '-':>10}"
          f"   (n={vv['n']}; target p50<={target['p50_ms']}, p95<={target['p95_ms']})")
    print(f"calls at once: {args.calls} (started within {args.stagger:g} s); calls: "
          f"{len(calls)}; turns answered "
          f"{result['answered']}/{result['turns']}; early starts {result['early_starts']}; "
          f"play-out gaps {result['gaps']}; late clock ticks {result['late_ticks']}; "
          f"load {result['machine']['load_average_before'][0]} -> "
          f"{result['machine']['load_average_after'][0]}")
    write_results(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
