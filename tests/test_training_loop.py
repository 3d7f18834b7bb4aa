"""The training loop end to end, as an operator runs it.

Live calls are logged, redacted, reviewed (a scripted reviewer corrects the
intents), built into a dataset, fine-tuned on for a few steps, verified and
promoted; a CallService that was running all along picks the promoted model
up, and the next call is answered with it. Every step is the real thing: the
caller is espeak-ng on an in-memory line at real-time pace, the models are
the bundled ones, and the data steps and training are the ``voicedesk`` CLI
in a subprocess against the same VOICEDESK_HOME.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.conftest import run_cli
from tests.test_live_call import say
from training.data.digits import number_runs, tokenize
from training.data.fusion import split_of
from training.data.labels import views
from training.export import open_exported
from training.store import CallStore
from voice.line import CallerScript, CallerTurn, MemoryLine
from voice.service import CallOutcome, CallService
from voicedesk.config import Config

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng (Debian package) speaks the caller's part")

# 07700 900123, a UK number reserved for drama (nobody's phone), said fluently: digits read
# one by one with pauses between them can end the caller's turn mid-number.
PHONE = "oh seven seven oh oh nine oh oh one two three"
REVIEWER = "dana.reviewer"

# What each scripted call says, and the intent a reviewer gives each caller turn.
CALLS = [
    [("Hi, my internet has been down since this morning.", "report_outage"),
     ("Thanks, bye.", "goodbye")],
    [(f"I have a new phone number, it is {PHONE}.", "update_contact_details"),
     ("That's all, goodbye.", "goodbye")],
    [("How much data have I used this month?", "data_usage"),
     ("Okay, thank you, goodbye.", "goodbye")],
]
# One clause: after a complete-sounding clause and a comma's pause ("My broadband keeps
# dropping out, ...") the endpointer may end the turn at its 300-ms complete-turn wait,
# depending on whether the pause pass is back in time. That is endpointing's business
# (tests/test_speech_stages.py, benchmarks/latency.py); here it made the call two turns
# now and then.
NEXT_CALL = "Can you check for an outage on my broadband?"

# The candidate has trained for two steps on a handful of turns: it cannot be expected to
# beat the bundled model yet, and this test is about the loop carrying a model from calls
# to the line, not about its accuracy (tests/test_training_llm.py checks that the gates
# fail a worse model). So the quality gates tolerate any drop, and latency may be up to
# ten times the baseline's on a busy 2-core machine. Verification still measures both
# models on the dataset's held-out call and must record a passed verdict.
LOOSE_GATES = """\
[intent_accuracy]
tolerance = 1.0
[intent_macro_f1]
tolerance = 1.0
[oos_recall]
tolerance = 1.0
[slot_f1]
tolerance = 1.0
[scenario_pass_rate]
tolerance = 1.0
[latency_p50_ms]
tolerance = 10.0
relative = true
"""


async def call(service: CallService, lines: list[str]) -> CallOutcome:
    # a patient caller: on a loaded machine a reply may take longer than the default 12 s
    script = CallerScript([CallerTurn(say(text), text=text) for text in lines],
                          reply_timeout_s=30)
    return await service.handle(MemoryLine(script, 16_000))


def cli(home: Path, *args: str) -> str:
    result = run_cli([str(a) for a in args], home)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def digits(text: str) -> str:
    """Every digit in the text, written as a numeral or said as a word ("oh seven")."""
    return "".join(t.digits for t in tokenize(text))


def longest_number(text: str) -> str:
    tokens = tokenize(text)
    runs = ["".join(tokens[i].digits for i in run) for run in number_runs(tokens)]
    return max(runs, key=len, default="")


def test_calls_become_a_promoted_model_that_answers_the_next_call(
        home: Path, config: Config, assistant, tmp_path: Path) -> None:
    config.call.model_check_s = 0.5
    asyncio.run(loop(home, config, assistant, tmp_path))


async def loop(home: Path, config: Config, assistant, work: Path) -> None:
    store = CallStore(config.database_url, config.audio_dir)
    service = CallService(config, assistant, store)
    await service.start()  # long before the promotion: it has to notice it by itself
    configured = service.assistant.describe()["llm"]
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    async def run(*args: str) -> str:
        return await asyncio.to_thread(cli, home, *args)

    try:
        # 1. live calls, stored
        # One after another: three at once on two busy cores can starve a call's turn.
        expected: dict[str, list[str]] = {}
        for script in CALLS:
            outcome = await call(service, [text for text, _ in script])
            assert outcome.stored
            stored = store.get_call(outcome.call_id)
            assert stored is not None
            assert len(stored.turns) == len(script), [t.transcript for t in stored.turns]
            expected[outcome.call_id] = [intent for _, intent in script]
        phone_call = list(expected)[1]
        phone_turn = store.get_call(phone_call).turns[0]
        assert "phone" in phone_turn.transcript.lower()
        # the number as Whisper wrote it down (it may drop a digit or two): at least the 7
        # digits the redactor takes for a phone number after the word "phone"
        heard = longest_number(phone_turn.transcript)
        assert len(heard) >= 7, phone_turn.transcript
        assert service.generation == 0
        lap("calls")

        # 2. redaction of the store
        report = json.loads(await run("data", "redact", "--json", "--quiet"))
        assert report["counts"].get("phone_number", 0) >= 1, report
        assert report["turns_redacted"] >= 1 and report["calls_redacted"] >= 1
        scrubbed = store.get_call(phone_call).turns[0]
        assert heard not in digits(scrubbed.transcript), scrubbed.transcript
        assert "[PHONE_NUMBER]" in scrubbed.transcript
        said = " ".join(w["word"] for w in scrubbed.words) + json.dumps(scrubbed.slots)
        assert heard not in digits(said), said
        lap("redact")

        # 3. review: export the queue, a reviewer corrects every intent, import it back.
        # (The calls carry the live call's intents, so `data annotate` is not needed to
        # have something to review.)
        queue = work / "review.jsonl"
        await run("data", "review-export", "--out", queue, "--min-confidence", "0")
        rows = [json.loads(line) for line in queue.read_text().splitlines()]
        assert {(r["call_id"], r["index"]) for r in rows} == {
            (c, i) for c, intents in expected.items() for i in range(len(intents))}
        assert not any(heard in digits(r["text"]) for r in rows)
        for row in rows:  # the reviewer reads each turn and sets the right intent
            row["intent"], row["reviewer"] = expected[row["call_id"]][row["index"]], REVIEWER
        queue.write_text("".join(json.dumps(r) + "\n" for r in rows))
        imported = json.loads(await run("data", "review-import", queue, "--json"))
        assert imported["reviewed_turns"] == len(rows) and not imported["errors"], imported
        with Session(store.engine) as session:
            turns = views(session)
        assert len(turns) == len(rows)
        reviewed = {f"turn-{v.turn_id}": v.intent for v in turns}
        for view in turns:
            assert view.intent == expected[view.call_id][view.index]
            assert view.intent_reviewed and view.reviewers["intent"] == REVIEWER
            assert view.label_source == "import"
        lap("review")

        # 4. the dataset, split by call. With three calls a hashed split can leave train or
        # test empty, so pick the split seed that puts calls in both (a CLI option).
        fractions = (0.8, 0.1, 0.1)
        seed = next(s for s in range(1000)
                    if {"train", "test"} <= {split_of(c, s, fractions) for c in expected})
        dataset = work / "dataset"
        await run("data", "build-dataset", "--out", dataset, "--seed", str(seed),
                  "--quiet")
        manifest = json.loads((dataset / "manifest.json").read_text())
        assert manifest["seed"] == seed and manifest["sources"]["calls"]["turns_used"] == len(rows)
        in_split: dict[str, set[str]] = {}
        for split in ("train", "validation", "test"):
            for line in (dataset / f"{split}.jsonl").read_text().splitlines():
                row = json.loads(line)
                if row["source"] == "calls":
                    in_split.setdefault(row["call_id"], set()).add(split)
                    assert row["intent"] == reviewed[row["id"]]
                    assert heard not in digits(row["text"])
        assert in_split == {c: {split_of(c, seed, fractions)} for c in expected}
        assert manifest["splits"]["train"]["examples"] >= 2
        assert manifest["splits"]["test"]["examples"] >= 2
        lap("dataset")

        # 5. fine-tune a few steps on it
        run_dir = work / "finetune"
        out = await run("train", "finetune", "--data", dataset, "--out", run_dir,
                        "--max-steps", "2", "--batch-size", "2", "--no-variants",
                        "--threads", "2")
        assert "trained 2 steps" in out and "registered as version" in out, out
        candidate = run_dir / "model"
        serving = open_exported(candidate).serving_path(config.llm.engine)
        lap("finetune")

        # 6. verify against the configured model on the held-out call, then promote
        gates = work / "gates.toml"
        gates.write_text(LOOSE_GATES)
        verdict_file = work / "verdict.json"
        out = await run("verify", candidate, "--data", dataset, "--no-scenarios",
                        "--gates", gates, "--json", verdict_file)
        verdict = json.loads(verdict_file.read_text())
        assert verdict["passed"] and "PASSED" in out, out
        assert verdict["metrics"]["candidate"]["turns"] == \
            verdict["metrics"]["baseline"]["turns"] >= 2
        assert {g["metric"] for g in verdict["gates"]} >= {"intent_accuracy",
                                                          "latency_p50_ms"}
        lap("verify")
        assert service.generation == 0  # nothing promoted yet: the configured model serves
        out = await run("models", "promote", candidate)
        assert "promoted llm version" in out, out
        lap("promote")

        # 7. the running service switches, and the next call is answered by the candidate
        deadline = time.monotonic() + 120
        while service.generation == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert service.generation >= 1, "the service did not pick up the promoted model"
        now = service.assistant.describe()["llm"]
        assert now.endswith(str(serving)) and now != configured, (configured, now)
        lap("swap")
        outcome = await call(service, [NEXT_CALL])
        turns = [t for t in outcome.turns if t.transcript]
        assert len(turns) == 1 and turns[0].reply.strip() and turns[0].heard.strip()
        assert outcome.stored
        stored = store.get_call(outcome.call_id)
        assert stored is not None and len(stored.turns) == 1
        assert stored.turns[0].reply and stored.turns[0].intent
        assert stored.models["llm"].endswith(str(serving))
        lap("next call")
    finally:
        await service.stop()
        print("stage seconds:", timings)
