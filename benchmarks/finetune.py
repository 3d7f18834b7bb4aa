"""Fine-tuning the default LLM on the telecom task: accuracy, scenarios, latency, epoch time.

    .venv/bin/python benchmarks/finetune.py [--epochs 3] [--method lora] [--json PATH]
        [--general clinc150,banking77 [--also-without]] [--calibrate [--refit]] [--no-timing]
        [--test-set benchmarks/data/telecom_turns.yaml]

Side by side, in one run, on the same held-out split of the telecom pack's
intent examples (``training.task_examples.domain_split``: about a quarter of
each intent's examples, removed from the retrieval index so no model can
look them up): the untuned SmolLM2-135M with its few-shot prompt against the
same model fine-tuned (LoRA by default) on the rest and on the intents'
descriptions (as ``voicedesk train finetune --domain`` does), asked with the
zero-shot turn prompt. Each is scored as the recogniser runs it (LLM choice times the
retrieval prior) and as the LLM alone (retrieval weight 0), plus the
scenario suite's pass rate and the per-turn latency, both served by
CTranslate2 int8.

``--general`` adds the rows of public corpora the pack's ``general_labels.yaml``
maps onto its catalogue (``--also-without`` trains the pack-only model too, side
by side); ``--calibrate`` holds out a fifth of the training turns and chooses the
recogniser's retrieval weight on them before the test turns are scored.
``--test-set`` scores on a file of turns written apart from the pack instead
(``benchmarks/data/telecom_turns.yaml``: 12 per intent, from the descriptions
alone); every pack example then trains and retrieves, and a test turn the pack
has word for word is left out.

The LoRA epoch time over 10,000 short examples is extrapolated from a
measured number of steps (``--timing-steps``) of the same loop and batch
size on short telecom turns; the report says so. ``--timing-only
--timing-steps 626`` runs a whole epoch's 625 steps (the pack's training
turns, cycled) and reports its wall time instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import cpu_model, version, write_results  # noqa: E402

from nlu.domain import load_domain  # noqa: E402
from training.finetune import FinetuneOptions, expand, finetune, sft_sequences  # noqa: E402
from training.loop import LoopOptions  # noqa: E402
from training.retrieval_weight import best_weight, score_weights, write_weight  # noqa: E402
from training.task_examples import (  # noqa: E402
    description_examples,
    domain_split,
    general_turns,
    validation_split,
    without_examples,
    written_apart,
)
from training.verify import SCENARIOS, VerifyOptions, evaluate_llm, load_llm  # noqa: E402
from voicedesk.config import load_config  # noqa: E402
from voicedesk.models.prepare import ModelStore  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "finetune.json"
DEFAULT_CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def measure(label: str, path: str | None, config, turns, embedder) -> dict:
    """As served (the marker's retrieval weight, else the configured one), with the
    scenario suite; and the LLM alone (weight 0)."""
    out = {}
    model = load_llm(config, path)
    for key, weight, scenarios in (("recogniser", None, SCENARIOS), ("llm_alone", 0.0, None)):
        metrics, details = evaluate_llm(model, config, VerifyOptions(
            turns=turns, scenarios=scenarios, retrieval_weight=weight), embedder,
            say=lambda m: print(f"  {label}: {m}"))
        out[key] = {**metrics, "errors": details.get("errors", []),
                    "scenario_failures": details.get("scenario_failures", [])}
    return out


def epoch_time(base: str, steps: int, batch_size: int, out: Path, bf16: bool = False) -> dict:
    """Seconds per LoRA step on short telecom turns, and the 10,000-example epoch it implies."""
    import shutil

    from training.lm import collate, load_causal_lm, loss
    from training.loop import train

    domain = load_domain("telecom")
    examples = expand(domain_split(domain, "train"), FinetuneOptions())
    model, tokenizer = load_causal_lm(base, "lora")
    sequences = sft_sequences(examples, tokenizer, FinetuneOptions())
    shutil.rmtree(out, ignore_errors=True)
    options = LoopOptions(max_steps=steps + 1, batch_size=batch_size, learning_rate=1e-3,
                          save_every=10_000, progress=False, bf16=bf16)
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(step: int, _steps: int, _loss: float) -> None:
        now = time.perf_counter()
        if step > 1:  # the first step pays for warm-up
            times.append(now - last[0])
        last[0] = now

    train(model, sequences, lambda b: collate(b, tokenizer.eos_token_id), loss, out, options,
          {}, tick)
    per_step = statistics.median(times)
    tokens = statistics.mean(len(s.ids) for s in sequences)
    epoch_steps = -(-10_000 // batch_size)
    result = {"measured_steps": len(times), "batch_size": batch_size,
              "examples": len(sequences),
              "mean_tokens_per_example": round(tokens, 1), "seconds_per_step": per_step,
              "extrapolated_epoch_minutes_10k": per_step * epoch_steps / 60,
              "threads": os.cpu_count(), "bf16": bf16}
    if len(times) >= epoch_steps:  # a whole epoch's steps ran: its wall time, not an estimate
        result["measured_epoch_minutes_10k"] = sum(times[:epoch_steps]) / 60
    return result


def timing_only(args: argparse.Namespace) -> int:
    base = ModelStore(load_config().models_dir).llm_hf(load_config().llm.model)
    load = os.getloadavg()
    timing = epoch_time(base, args.timing_steps, 16, args.out / "timing")
    if "measured_epoch_minutes_10k" in timing:
        print(f"LoRA epoch over 10,000 short examples: {timing['measured_epoch_minutes_10k']:.1f}"
              f" min MEASURED over {timing['measured_steps']} steps of {timing['batch_size']} "
              f"(the pack's {timing['examples']} training turns, cycled; load average "
              f"{load[0]:.2f} at the start); target <= 30 min")
    else:
        print(f"LoRA epoch over 10,000 short examples: "
              f"{timing['extrapolated_epoch_minutes_10k']:.1f} min EXTRAPOLATED from "
              f"{timing['measured_steps']} measured steps of {timing['batch_size']} "
              f"({timing['seconds_per_step']:.2f} s/step; load average {load[0]:.2f} at the "
              f"start); target <= 30 min (--timing-steps 626 runs a whole epoch)")
    path = args.json.with_name(args.json.stem + ".timing.json")
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(),
                                "cores": os.cpu_count(), "load_average_start": load,
                                "load_average_end": os.getloadavg(),
                                "lora_epoch_timing": timing}, indent=2) + "\n")
    print(f"results in {path}")
    return 0


def train_and_measure(label: str, base: str, examples, args, config, test_set, embedder,
                      validation=None, weight: float | None = None) -> dict:
    """Fine-tune on ``examples``; with ``validation`` turns (not trained on), choose the
    retrieval weight on them, or take ``weight``; then score on the held-out test turns."""
    import shutil

    out = args.out / label
    shutil.rmtree(out, ignore_errors=True)  # a benchmark starts afresh
    print(f"fine-tuning {label} ({args.method}, {args.epochs} epochs, {len(examples)} turns) ...")
    started = time.perf_counter()
    options = FinetuneOptions(method=args.method, loop=LoopOptions(
        epochs=args.epochs, batch_size=16, learning_rate=0.0, save_every=1000))
    outcome = finetune(base, examples, out, options)
    train_s = time.perf_counter() - started
    assert outcome.model is not None
    print(f"trained {outcome.loop.steps} steps in {train_s:.0f} s "
          f"(final loss {outcome.loop.final_loss:.3f})")
    serving = outcome.model.serving_path(config.llm.engine)
    chosen: dict = {}
    if validation:
        engine = load_llm(config, str(serving)).engine
        # The test turns stay out of retrieval here too: they play no part in the choice.
        domain = without_examples(load_domain(config.nlu.domain), test_set)
        accuracy = score_weights(engine, embedder, domain, validation,
                                 config.nlu.examples_per_turn)
        weight = best_weight(accuracy)
        chosen = {"validation_turns": len(validation),
                  "validation_accuracy": {str(w): a for w, a in accuracy.items()}}
        print(f"retrieval weight {weight} chosen on {len(validation)} validation turns: "
              + ", ".join(f"{w}: {a:.3f}" for w, a in accuracy.items()))
    if weight is not None:
        write_weight(outcome.model.root, weight, {}, 0)
        chosen["retrieval_weight"] = weight
    print(f"{label} model (zero-shot turn prompt):")
    measured = measure(label, str(serving), config, test_set, embedder)
    return {**measured, **chosen, "train_examples": len(examples),
            "train_steps": outcome.loop.steps, "train_seconds": train_s,
            "final_loss": outcome.loop.final_loss}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--method", choices=("lora", "full"), default="lora")
    parser.add_argument("--general", default="",
                        help="comma-separated public corpora (clinc150, banking77) whose rows "
                             "the pack's general_labels.yaml maps onto the catalogue, added to "
                             "the training turns")
    parser.add_argument("--also-without", action="store_true",
                        help="with --general: also fine-tune on the pack alone, side by side")
    parser.add_argument("--calibrate", action="store_true",
                        help="hold out a fifth of the training turns and choose the retrieval "
                             "weight on them (voicedesk train finetune --calibrate-retrieval)")
    parser.add_argument("--refit", action="store_true",
                        help="with --calibrate: fine-tune again on every training turn and "
                             "serve it with the weight chosen")
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA,
                        help="folder holding nlu/clinc150/ and nlu/banking77/")
    parser.add_argument("--test-set", type=Path, default=None,
                        help="a YAML file of labelled turns written apart from the pack "
                             "(turns: [{text, intent}], e.g. "
                             "benchmarks/data/telecom_turns.yaml); the whole pack then trains")
    parser.add_argument("--timing-steps", type=int, default=8)
    parser.add_argument("--no-timing", action="store_true", help="skip the LoRA epoch timing")
    parser.add_argument("--out", type=Path, default=Path("/tmp/voicedesk-bench-finetune"))
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--timing-only", action="store_true",
                        help="only the LoRA epoch timing (a minute or two; for a quiet machine)")
    args = parser.parse_args()
    if args.timing_only:
        return timing_only(args)

    config = load_config()
    models = ModelStore(config.models_dir)
    base = models.llm_hf(config.llm.model)
    from nlu.embeddings import SentenceEmbedder

    embedder = SentenceEmbedder(models.embeddings(config.nlu.embeddings))
    domain = load_domain(config.nlu.domain)
    # What `voicedesk train finetune --domain` trains on: the pack's examples outside the
    # held-out split, and each intent's description said by a caller.
    train_set = domain_split(domain, "train") + description_examples(domain)
    test_set = domain_split(domain, "test")
    if args.test_set:
        # A test set written apart from the pack: every pack example trains and retrieves.
        train_set += test_set
        test_set = written_apart(args.test_set, domain, say=print)
    print(f"telecom intent examples: {len(train_set)} train (with descriptions), "
          f"{len(test_set)} held out" + (f" ({args.test_set})" if args.test_set else ""))
    names = tuple(n for n in args.general.split(",") if n)
    general = general_turns(args.corpora, names, domain, "train", say=print) if names else []
    print("untuned model (few-shot prompt):")
    sides = {"untuned": measure("untuned", None, config, test_set, embedder)}
    if not (names or args.calibrate) or args.also_without:
        sides["tuned"] = train_and_measure("tuned", base, train_set, args, config, test_set,
                                           embedder)
    label = "tuned" + ("+general" if names else "") + ("+weight" if args.calibrate else "")
    if names or args.calibrate:
        fit, validation = (validation_split(train_set) if args.calibrate
                           else (train_set, None))
        if validation:
            print(f"held out {len(validation)} of the {len(train_set)} training turns to "
                  f"choose the retrieval weight on")
        sides[label] = train_and_measure(label, base, fit + general, args, config, test_set,
                                         embedder, validation)
        if args.refit and validation:
            sides[label + "+refit"] = train_and_measure(
                label + "+refit", base, train_set + general, args, config, test_set,
                embedder, weight=sides[label]["retrieval_weight"])

    def errors(side: dict) -> int:
        return round((1 - side["intent_accuracy"]) * side["turns"])

    print(f"\n{'model':<26} {'scoring':<11} {'accuracy':>8} {'errors':>6} {'oos recall':>10} "
          f"{'scenarios':>9} {'ms/turn':>7}")
    for label, side in sides.items():
        for key in ("recogniser", "llm_alone"):
            m = side[key]
            oos = m.get("oos_recall")
            print(f"{label:<26} {key:<11} {m['intent_accuracy']:>8.3f} {errors(m):>6} "
                  f"{'' if oos is None else f'{oos:.2f}':>10} "
                  f"{m.get('scenario_pass_rate', float('nan')):>9.3f} "
                  f"{m['latency_p50_ms']:>7.0f}")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(),
              "cores": os.cpu_count(), "torch": version("torch"),
              "transformers": version("transformers"), "peft": version("peft"),
              "load_average_end": os.getloadavg(),
              "train_examples": len(train_set), "test_examples": len(test_set),
              "test_set": str(args.test_set) if args.test_set else "pack split",
              "method": args.method, "epochs": args.epochs, "general": list(names), **sides}
    if not args.no_timing:
        print(f"timing {args.timing_steps} LoRA steps for the epoch estimate ...")
        timing = epoch_time(base, args.timing_steps, 16, args.out / "timing")
        timing_bf16 = epoch_time(base, args.timing_steps, 16, args.out / "timing", bf16=True)
        print(f"LoRA epoch over 10,000 short examples: "
              f"{timing['extrapolated_epoch_minutes_10k']:.1f} min EXTRAPOLATED from "
              f"{timing['measured_steps']} measured steps of {timing['batch_size']} "
              f"({timing['seconds_per_step']:.2f} s/step, "
              f"{timing['mean_tokens_per_example']} tokens/example); with bfloat16 autocast "
              f"{timing_bf16['extrapolated_epoch_minutes_10k']:.1f} min "
              f"({timing_bf16['seconds_per_step']:.2f} s/step)")
        result.update(lora_epoch_timing=timing, lora_epoch_timing_bf16=timing_bf16)
    write_results(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
