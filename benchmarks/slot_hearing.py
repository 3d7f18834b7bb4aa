"""How often an answer to a slot question is heard right: Whisper's first reading alone,
against the reading chosen by what was asked for (``nlu.readings``), side by side.

Run from the repository root::

    python benchmarks/slot_hearing.py           # quick: 12 answers of each kind, ~2 minutes
    python benchmarks/slot_hearing.py --full    # 40 of each

Answers are generated from a fixed seed (``--seed``) the way callers give them:
PINs (a third of them one digit four times, a fifth two pairs), account numbers
with or without the PIN, and addresses in the towns of the scenario suite's CRM.
espeak-ng speaks each (a voice other than the assistant's), and the scenario
runner's ``AudioHearing`` hears it with the hint of the slot being asked for,
exactly as ``voicedesk simulate --audio`` does. "first reading" is the greedy
transcript; "chosen" lets ``AudioHearing`` replace a reading whose numbers do
not have a digits slot's length, or whose address names no town served, by the
likeliest of a beam search's readings that does. An answer counts as heard right
when the slot extractor gets the value said from it: the digits exactly; for
an address, the house number first and the town.

``--live`` hears the PINs and account numbers as a live call does instead:
over the 8 kHz line (down to 8 kHz and back), pushed in 20-ms frames into the
streaming transcriber with the loop's expectation (``voice.listening.
expected_answer``), then half a second of pause and the end of the turn;
"live greedy" takes the hinted greedy reading, "live searched" also searches
a beam's readings when greedy's does not fit (``reading_that_fits``), both with
Whisper's full 30-s window (what calls do); "live quick first" (``quick_answers``) hears the answer
with the quick pass (a shorter encoder window) first and falls back to
"live searched" when that reading does not fit or stops short of the speech.
Each also reports the time from the pass over the pause to the Final.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import cpu_model, version, write_results  # noqa: E402

from nlu.crm.demo import DemoCRM  # noqa: E402
from nlu.scenarios import AudioHearing, load_scenarios  # noqa: E402
from voicedesk.config import load_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "nlu" / "domain" / "telecom" / "scenarios.yaml"
RESULTS = Path(__file__).parent / "results" / "slot_hearing.json"
LIVE_RESULTS = RESULTS.with_name("slot_hearing.live.json")
LIVE_MODES = ("live greedy", "live searched", "live quick first")
KNOWN_ACCOUNT = "40019012"  # a customer of the suite: asked for the PIN next
STREETS = ["Station Road", "Mill Lane", "Rose Court", "Bridge Street", "Harbour Road",
           "Church Lane", "Park Avenue", "Meadow Close", "High Street", "Orchard Way"]


def a_pin(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return str(rng.randrange(10)) * 4
    if kind < 0.5:
        a, b = rng.sample("0123456789", 2)
        return a + a + b + b
    return "".join(rng.choice("0123456789") for _ in range(4))


def answers(rng: random.Random, count: int, towns: list[str]) -> list[tuple[str, str, dict]]:
    """(slot asked for, line said, values it holds), ``count`` of each kind."""
    out: list[tuple[str, str, dict]] = []
    for _ in range(count):
        pin, account = a_pin(rng), "400" + "".join(rng.choice("0123456789") for _ in range(5))
        line = rng.choice(["{p}", "my pin is {p}", "pin {p}", "it's {p}"]).format(p=pin)
        out.append(("pin", line, {"pin": pin}))
        form = rng.choice(["account {a} pin {p}", "my account number is {a}", "{a}",
                           "it's {a} and the pin is {p}"])
        values = {"account_number": account, **({"pin": pin} if "{p}" in form else {})}
        out.append(("account_number", form.format(a=account, p=pin), values))
        number, street, town = rng.randint(1, 120), rng.choice(STREETS), rng.choice(towns)
        line = rng.choice(["{n} {s}, {t}", "it's {n} {s}, {t}", "I live at {n} {s}, {t}"])
        out.append(("address", line.format(n=number, s=street, t=town),
                    {"number": str(number), "town": town}))
    return out


def heard_right(found: dict[str, str], values: dict) -> bool:
    if "town" in values:
        address = found.get("address", "")
        return address.split(" ")[0] == values["number"] and \
            values["town"].lower() in address.lower()
    return all(found.get(k) == v for k, v in values.items())


class _GreedyOnly:
    """The transcriber without its beam search: what a live call heard before it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name

    def transcribe(self, samples: Any, prompt: str | None = None, fallback: bool = True) -> Any:
        return self.inner.transcribe(samples, prompt, fallback)

    def quick_pass(self, samples: Any, prompt: str | None = None) -> Any:
        return self.inner.quick_pass(samples, prompt)


def live_hearing(transcriber: Any, voice: Any, quick_answers: bool = True,
                 settle: list[float] | None = None
                 ) -> Callable[[str, int, frozenset[int], str], str]:
    """Hear a line as the live loop does (see the module docstring); returns the Final.

    ``quick_answers``: the answer is heard with the quick pass first (the default);
    False keeps the full window. ``settle`` collects each answer's seconds from the
    pass over the pause to the Final: what the caller waits for."""
    import numpy as np

    from asr.audio import SPEECH_RATE, resample
    from asr.streaming import StreamingOptions, StreamingTranscriber
    from nlu.scenarios import speakable
    from voice.listening import expected_answer

    frame = SPEECH_RATE // 50

    def hear(line: str, expected_digits: int, lengths: frozenset[int], hint: str) -> str:
        speech = resample(np.concatenate(list(voice.synthesize(speakable(line)))),
                          voice.sample_rate, 8000)
        samples = resample(speech, 8000, SPEECH_RATE)
        stream = StreamingTranscriber(transcriber, StreamingOptions(quick_answers=quick_answers))
        stream.expect(expected_answer(expected_digits, lengths, hint))
        for k in range(0, len(samples), frame):
            stream.push(samples[k:k + frame], True)
            stream.poll()
        for _ in range(25):
            stream.push(np.zeros(frame, np.float32), False)
        started = time.perf_counter()
        stream.poll()
        text = stream.end_turn()[-1].text
        if settle is not None:
            settle.append(time.perf_counter() - started)
        return text

    return hear


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="40 answers of each kind")
    parser.add_argument("--count", type=int, default=None, help="answers of each kind")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None,
                        help="results file (default results/slot_hearing.json, or "
                             "slot_hearing.live.json with --live)")
    parser.add_argument("--live", action="store_true",
                        help="PINs and account numbers as a live call hears them: greedy "
                             "against searched (see the module docstring)")
    args = parser.parse_args()
    count = args.count or (40 if args.full else 12)
    args.json = args.json or (LIVE_RESULTS if args.live else RESULTS)

    from voice.assistant import Assistant
    from voice.espeak_tts import EspeakSynthesizer

    print("loading models ...", flush=True)
    assistant = Assistant.load(load_config(None))
    suite = load_scenarios(SUITE)
    crm = DemoCRM()
    crm.load(suite["customers"], suite["outages"])
    manager = assistant.dialogue(crm)
    asked = {}  # slot -> a dialogue state waiting for it
    for slot, lines in {"account_number": ["What's my balance?"],
                        "pin": ["What's my balance?", f"It's {KNOWN_ACCOUNT}"],
                        "address": ["My internet is down"]}.items():
        state = manager.start()
        for line in lines:
            manager.handle(state, text=line)
        assert state.pending == slot, (slot, state.pending)
        asked[slot] = state
    hear = AudioHearing(assistant.transcriber, EspeakSynthesizer())
    settle: dict[str, list[float]] = {m: [] for m in LIVE_MODES}
    live = {"live greedy": live_hearing(_GreedyOnly(assistant.transcriber), EspeakSynthesizer(),
                                        False, settle["live greedy"]),
            "live searched": live_hearing(assistant.transcriber, EspeakSynthesizer(), False,
                                          settle["live searched"]),
            "live quick first": live_hearing(assistant.transcriber, EspeakSynthesizer(), True,
                                             settle["live quick first"])}
    modes = tuple(live) if args.live else ("first reading", "chosen")
    rows: list[dict] = []
    for slot, line, values in answers(random.Random(args.seed), count, crm.service_areas()):
        if args.live and slot == "address":
            continue  # a live call expects digits only
        state, row = asked[slot], {"slot": slot, "said": line}
        for mode in modes:
            started = time.perf_counter()
            if args.live:
                text = live[mode](line, manager.expected_digits(state),
                                  manager.digit_lengths(state), manager.hearing_hint(state))
            else:
                extra = {} if mode == "first reading" else {
                    "lengths": manager.digit_lengths(state),
                    "places": manager.known_places(state)}
                text = hear({"say": line}, SUITE.parent, manager.hearing_hint(state), **extra)
            row[mode] = {"heard": text, "seconds": round(time.perf_counter() - started, 3),
                         "right": heard_right(manager.extractor.extract(text, slot), values)}
            if args.live:
                row[mode]["settle_s"] = round(settle[mode][-1], 3)
        rows.append(row)
        print(f"{slot:15s} {line[:36]:36s} " + " | ".join(
            f"{'ok' if row[m]['right'] else 'XX'} {row[m]['heard'][:30]}" for m in modes),
            flush=True)

    print(f"\n{'answers':22s}" + "".join(f"{m:>22s}" for m in modes))
    summary: dict[str, dict] = {}
    for slot in ("pin", "account_number", "address", "all"):
        chosen = [r for r in rows if slot in ("all", r["slot"])]
        if not chosen:
            continue
        summary[slot] = {m: {"right": sum(r[m]["right"] for r in chosen), "of": len(chosen),
                             "median_s": statistics.median(r[m]["seconds"] for r in chosen)}
                         for m in modes}
        if args.live:
            for m in modes:
                times = sorted(r[m]["settle_s"] for r in chosen)
                summary[slot][m]["settle_median_s"] = statistics.median(times)
                summary[slot][m]["settle_p90_s"] = times[int(0.9 * (len(times) - 1))]
        print(f"{slot:22s}" + "".join(
            f"{summary[slot][m]['right']:>12d} of {len(chosen):<3d} "
            f"{summary[slot][m]['median_s']:4.2f}s" for m in modes))
    if args.live:
        print("\nfrom the pass over the pause to the Final (median / p90, all answers): " +
              "; ".join(f"{m} {summary['all'][m]['settle_median_s']:.2f} / "
                        f"{summary['all'][m]['settle_p90_s']:.2f} s" for m in modes))
    write_results(args.json, {
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "seed": args.seed,
        "count_per_kind": count, "live": args.live, "faster-whisper": version("faster-whisper"),
        "asr_model": assistant.config.asr.model, "summary": summary, "answers": rows})


if __name__ == "__main__":
    main()
