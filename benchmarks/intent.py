"""Intent classification on public benchmarks, trained through training/, and the time a
call turn takes to understand.

    python benchmarks/intent.py            # quick: a slice of each set, a few minutes
    python benchmarks/intent.py --full     # the reported figures (about an hour on 2 cores)
    python benchmarks/intent.py --full --dataset banking77 --seeds 2   # two models averaged
    python benchmarks/intent.py --dataset latency --test-set benchmarks/data/telecom_turns.yaml

What is trained: the bundled all-MiniLM-L6-v2 encoder, fine-tuned whole with
a cosine head by ``training.intent_classifier`` (the same service
``voicedesk train intent`` runs), one model per data set, on its own
training split only.

- Banking77: trained on all 10,003 ``train`` rows (nothing is tuned on a
  dev split, so none is held back from training);
  accuracy on the 3,080 ``test`` rows.
- CLINC150: trained on ``train`` plus ``oos_train`` (out of scope as a
  label); in-scope accuracy on ``test`` and out-of-scope recall on
  ``oos_test``, with the out-of-scope threshold set on ``val`` + ``oos_val``
  two ways, side by side: on the cosine with the nearest in-scope intent,
  rejecting at most ``--false-rejects`` of the in-scope ``val`` turns (what
  ``training.intent_classifier.calibrate`` does), and, as before, on the top
  probability, reaching ``--oos-recall`` of ``oos_val``.

``--reuse`` scores the models an earlier run left in ``--work`` (the same
data set, seed and options) instead of training them again, and trains only
the missing ones; a reused model's training time is that run's.

Beside each figure the script prints the anchors from the data's README
(published results and cheap baselines measured on a 2-core machine).

Turn understanding latency: intent plus slots for the held-out telecom turns
of the domain pack, one turn at a time as a call asks, with the default
recogniser (the pack's intent classifier, trained here without the held-out
turns, and the LLM when it is unsure) and with the LLM alone, each as p50/p95
milliseconds with its intent accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import cpu_model, version, write_results  # noqa: E402

from training.intent_classifier import (  # noqa: E402
    FALSE_REJECTS,
    ClassifierOptions,
    choose_threshold,
    train_classifier,
)
from voicedesk.config import load_config  # noqa: E402
from voicedesk.models.prepare import ModelStore  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nlu"
RESULTS = Path(__file__).parent / "results" / "intent.json"
OOS = "out_of_scope"
RUN_RECORD = "benchmark.json"  # what trained a model in --work: read by --reuse
TELECOM_EPOCHS = 10.0  # the pack's examples are few: ten epochs take well under a minute

ANCHORS = {
    "banking77": [("fine-tuned BERT-large (published)", "93.66 %"),
                  ("USE+ConveRT dual encoder (published)", "93.36 %"),
                  ("frozen MiniLM + logistic regression (2 cores)", "93.25 %"),
                  ("word+char TF-IDF linear SVM (2 cores)", "91.3 %")],
    "clinc150": [("BERT, out of scope as a class (published)", "96.9 % / 40.3 % OOS"),
                 ("BERT, confidence threshold (published)", "96.2 % / 52.3 % OOS")],
}
TARGETS = {"banking77": "accuracy >= 94.0 %", "clinc150": "in-scope >= 97 %, OOS recall >= 70 %"}


@dataclass
class Split:
    texts: list[str]
    labels: list[str]


def _per_label(split: Split, count: int | None, seed: int) -> Split:
    """At most ``count`` turns of each label, in a seeded order (None: all)."""
    if count is None:
        return split
    rows = list(range(len(split.texts)))
    random.Random(seed).shuffle(rows)
    seen: dict[str, int] = {}
    kept = []
    for i in rows:
        label = split.labels[i]
        if seen.get(label, 0) < count:
            seen[label] = seen.get(label, 0) + 1
            kept.append(i)
    kept.sort()
    return Split([split.texts[i] for i in kept], [split.labels[i] for i in kept])


def banking77(folder: Path) -> tuple[Split, Split]:
    def read(name: str) -> Split:
        with (folder / "banking77" / name).open(newline="") as f:
            rows = list(csv.DictReader(f))
        return Split([r["text"] for r in rows], [r["category"] for r in rows])

    return read("train.csv"), read("test.csv")


def clinc150(folder: Path) -> dict[str, Split]:
    data = json.loads((folder / "clinc150" / "data_full.json").read_text())

    def split(*keys: str) -> Split:
        rows = [row for key in keys for row in data[key]]
        return Split([t for t, _ in rows], [OOS if y == "oos" else y for t, y in rows])

    return {"train": split("train", "oos_train"), "val": split("val", "oos_val"),
            "test": split("test"), "oos_test": split("oos_test")}


def accuracy(predicted: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def _train(name: str, encoder: str, train: Split, out: Path, epochs: float,
           say: Callable[[str], None], seed: int = 0) -> tuple[Path, float, int]:
    shutil.rmtree(out, ignore_errors=True)  # a benchmark starts afresh
    options = ClassifierOptions(loop=replace(ClassifierOptions().loop, epochs=epochs,
                                             save_every=10_000, seed=seed))
    say(f"{name}: fine-tuning the encoder on {len(train.texts)} turns, "
        f"{len(set(train.labels))} labels, {epochs:g} epochs")
    started = time.perf_counter()
    outcome = train_classifier(encoder, train.texts, train.labels, out, options)
    seconds = time.perf_counter() - started
    say(f"{name}: trained {outcome.loop.steps} steps in {seconds / 60:.1f} min "
        f"(final loss {outcome.loop.final_loss:.3f})")
    return outcome.model_dir, seconds, outcome.loop.steps


def _seeded(data_set: str, encoder: str, train: Split, work: Path, epochs: float,
            say: Callable[[str], None], seeds: int, reuse: bool = False
            ) -> Iterator[tuple[Any, float, int]]:
    """One model per seed, trained as it is asked for: (classifier, seconds, steps).
    ``reuse``: the model an earlier run trained in the same folder, with its time."""
    from nlu.intent_classifier import IntentClassifier

    for seed in range(seeds):
        name = data_set if seeds == 1 else f"{data_set}, seed {seed}"
        out = work / f"{data_set}-{seed}"
        if reuse and (out / RUN_RECORD).is_file():
            seconds, steps = _earlier_run(out, name, epochs, len(train.texts), seed, say)
            yield IntentClassifier(out / "model"), seconds, steps
            continue
        model_dir, seconds, steps = _train(name, encoder, train, out, epochs, say, seed)
        (out / RUN_RECORD).write_text(json.dumps(
            {"seconds": seconds, "steps": steps, "epochs": epochs, "turns": len(train.texts),
             "seed": seed}))
        yield IntentClassifier(model_dir), seconds, steps


def _earlier_run(out: Path, name: str, epochs: float, turns: int, seed: int,
                 say: Callable[[str], None]) -> tuple[float, int]:
    """(seconds, steps) of the run that trained ``out``; refuses one trained otherwise."""
    run = json.loads((out / RUN_RECORD).read_text())
    wanted = {"epochs": epochs, "turns": turns, "seed": seed}
    if any(run.get(k) != v for k, v in wanted.items()):
        raise SystemExit(f"--reuse: {out} was trained with {run}, not {wanted}")
    say(f"{name}: reusing the model trained earlier ({run['seconds'] / 60:.1f} min, "
        f"{run['steps']} steps)")
    return run["seconds"], run["steps"]


def run_banking77(folder: Path, encoder: str, work: Path, full: bool, epochs: float,
                  say: Callable[[str], None], seeds: int = 1) -> dict:
    """``seeds`` > 1: that many models, trained with different seeds (batch order and
    head initialisation), their probabilities averaged; each member is also scored."""
    train, test = banking77(folder)
    if not full:
        train, test = _per_label(train, 20, 1), _per_label(test, 10, 2)
    total_s, steps, members = 0.0, 0, []
    probabilities = None
    started = time.perf_counter()
    for classifier, seconds, run_steps in _seeded("banking77", encoder, train, work, epochs, say,
                                                  seeds):
        total_s, steps = total_s + seconds, run_steps
        probs = classifier.probabilities(test.texts)
        members.append(accuracy([classifier.labels[i] for i in probs.argmax(axis=1)],
                                test.labels))
        probabilities = probs if probabilities is None else probabilities + probs
    test_s = time.perf_counter() - started - total_s
    predicted = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
    return {"train_turns": len(train.texts), "test_turns": len(test.texts), "epochs": epochs,
            "steps": steps, "seeds": seeds, "train_minutes": total_s / 60,
            "test_accuracy": accuracy(predicted, test.labels),
            "member_accuracies": members,
            "classify_ms_per_turn_batched": 1000 * test_s / len(test.texts)}


def run_clinc150(folder: Path, encoder: str, work: Path, full: bool, epochs: float,
                 oos_recall: float, say: Callable[[str], None], seeds: int = 1,
                 false_rejects: float = FALSE_REJECTS, reuse: bool = False) -> dict:
    """``seeds`` > 1: that many models, their cosines (and so probabilities) averaged, the
    thresholds calibrated on the averaged ``val`` scores; each member is also scored alone."""
    data = clinc150(folder)
    train, val, test, oos_test = data["train"], data["val"], data["test"], data["oos_test"]
    if not full:
        train, val = _per_label(train, 15, 1), _per_label(val, 5, 2)
        test, oos_test = _per_label(test, 5, 3), _per_label(oos_test, 200, 4)
    total_s, steps, members = 0.0, 0, []
    summed: dict[str, np.ndarray] = {}
    for classifier, seconds, run_steps in _seeded("clinc150", encoder, train, work, epochs, say,
                                                  seeds, reuse):
        total_s, steps = total_s + seconds, run_steps
        cosines = {part: classifier.cosines(split.texts)
                   for part, split in (("val", val), ("test", test), ("oos_test", oos_test))}
        members.append(_clinc_scores(classifier, cosines, val.labels, test.labels, oos_recall,
                                     false_rejects))
        summed = {k: v + summed[k] if k in summed else v for k, v in cosines.items()}
    mean = {k: v / seeds for k, v in summed.items()}
    scores = _clinc_scores(classifier, mean, val.labels, test.labels, oos_recall,
                           false_rejects)
    for rule in scores["rules"].values():
        say(f"clinc150: {rule['rule']}: threshold {rule['threshold']:.3f}")
    return {"train_turns": len(train.texts), "test_turns": len(test.texts),
            "oos_test_turns": len(oos_test.texts), "epochs": epochs, "steps": steps,
            "seeds": seeds, "train_minutes": total_s / 60, "reused": reuse, **scores,
            "members": members if seeds > 1 else []}


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that an in-scope turn scores above an out-of-scope one."""
    ranks = np.concatenate([inside, outside]).argsort().argsort() + 1
    n, m = len(inside), len(outside)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * m))


def _verdicts(part: dict, score: str, threshold: float) -> list[str]:
    return [OOS if s < threshold else p
            for s, p in zip(part[score], part["predicted"], strict=True)]


def _clinc_scores(classifier: Any, cosines: dict[str, np.ndarray], val_labels: list[str],
                  test_labels: list[str], oos_recall: float, false_rejects: float) -> dict:
    """Both threshold rules, set on ``val``, then in-scope accuracy on ``test`` and
    out-of-scope recall on ``oos_test``. The first rule's figures are the headline."""
    labels = classifier.labels
    parts = {part: {"cosine": classifier.in_scope_fit(c),
                    "probability": classifier.softmax(c).max(axis=1),
                    "predicted": [labels[i] for i in c.argmax(axis=1)]}
             for part, c in cosines.items()}
    is_oos = np.array([y == OOS for y in val_labels])
    rules = {"cosine": f"cosine with the nearest in-scope intent, at most {false_rejects:.0%} "
                       f"of in-scope val rejected",
             "probability": f"top probability, {oos_recall:.0%} of oos_val found (before)"}
    out: dict[str, dict] = {}
    for score, rule in rules.items():
        val = parts["val"]
        threshold = (choose_threshold(val[score], val["predicted"], val_labels, OOS,
                                      false_rejects=false_rejects) if score == "cosine" else
                     choose_threshold(val[score], val["predicted"], val_labels, OOS,
                                      target_recall=oos_recall))

        oos = _verdicts(parts["oos_test"], score, threshold)
        out[score] = {"rule": rule, "threshold": threshold,
                      "in_scope_accuracy": accuracy(_verdicts(parts["test"], score, threshold),
                                                    test_labels),
                      "oos_recall": sum(p == OOS for p in oos) / len(oos),
                      "val_auroc": _auroc(val[score][~is_oos], val[score][is_oos]),
                      "test_auroc": _auroc(parts["test"][score], parts["oos_test"][score])}
    head = out["cosine"]
    return {"threshold": head["threshold"], "in_scope_accuracy": head["in_scope_accuracy"],
            "oos_recall": head["oos_recall"],
            "accuracy_without_threshold": accuracy(parts["test"]["predicted"], test_labels),
            "rules": out}


def _percentiles(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"p50": statistics.median(ordered), "p95": ordered[int(0.95 * (len(ordered) - 1))],
            "turns": len(ordered)}


def understanding_latency(encoder: str, work: Path, say: Callable[[str], None],
                          test_set: Path | None = None) -> dict:
    """Intent + slots per held-out telecom turn, as a call asks: the default recogniser (a
    classifier trained on the pack, the LLM when it is unsure) and the LLM alone.
    ``test_set``: turns written apart from the pack (``finetune.py --test-set``); the
    whole pack then trains and retrieves, and turns the pack has word for word are left out."""
    from nlu.domain import load_domain
    from nlu.embeddings import SentenceEmbedder
    from nlu.intent_classifier import IntentClassifier
    from nlu.slots import SlotExtractor
    from nlu.understanding import IntentRecognizer
    from training.intent_classifier import domain_training_set
    from training.task_examples import domain_split, without_examples, written_apart
    from training.verify import intent_metrics, load_llm

    config = load_config()
    domain = load_domain(config.nlu.domain)
    held_out = domain_split(domain, "test")
    pack = without_examples(domain, held_out)  # the classifier never sees the held-out turns
    if test_set is not None:
        held_out, pack = written_apart(test_set, domain, say), domain
    slots = SlotExtractor(domain.slots, [p["name"] for p in domain.plans])
    embedder = SentenceEmbedder(ModelStore(config.models_dir).embeddings(config.nlu.embeddings))
    llm = load_llm(config, None).engine
    texts, labels = domain_training_set(pack)
    model_dir, seconds, _ = _train("telecom", encoder, Split(texts, labels), work / "telecom",
                                   TELECOM_EPOCHS, say)
    classifier = IntentClassifier(model_dir)
    recognizers = {
        f"default: classifier (LLM below {config.nlu.classifier_confident:g})": IntentRecognizer(
            llm, embedder, pack, config.nlu.examples_per_turn, config.nlu.retrieval_weight,
            classifier=classifier, confident=config.nlu.classifier_confident),
        f"classifier, {config.llm.model} below 0.3": IntentRecognizer(
            llm, embedder, pack, config.nlu.examples_per_turn, config.nlu.retrieval_weight,
            classifier=classifier, confident=0.3),
        f"{config.llm.model} alone (retrieved few-shot)": IntentRecognizer(
            llm, embedder, pack, config.nlu.examples_per_turn, config.nlu.retrieval_weight),
    }
    out: dict = {"telecom_classifier_train_minutes": seconds / 60,
                 "test_set": str(test_set) if test_set else "pack split",
                 "classifier_confident": config.nlu.classifier_confident}
    for label, recognizer in recognizers.items():
        recognizer.understand(held_out[0].text, held_out[0].context)  # warm-up
        predicted, times = [], []
        for example in held_out:
            started = time.perf_counter()
            predicted.append(recognizer.understand(example.text, example.context).intent)
            slots.extract(example.text)
            times.append((time.perf_counter() - started) * 1000)
        metrics = intent_metrics([e.intent for e in held_out], predicted)
        out[label] = {**_percentiles(times), "intent_accuracy": metrics["intent_accuracy"]}
        say(f"understanding, {label}: p50 {out[label]['p50']:.0f} ms, intent accuracy "
            f"{metrics['intent_accuracy']:.3f} on {len(held_out)} held-out telecom turns")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="whole data sets (the reported run)")
    parser.add_argument("--dataset", nargs="+", choices=("banking77", "clinc150", "latency"),
                        default=["banking77", "clinc150", "latency"])
    parser.add_argument("--epochs", type=float, default=None,
                        help="training epochs (default: 1 quick, 8 full)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train this many models per data set with different seeds and "
                             "average their probabilities (their training time adds up)")
    parser.add_argument("--false-rejects", type=float, default=FALSE_REJECTS,
                        help="share of in-scope val turns the CLINC150 cosine threshold may "
                             "reject (default %(default)s)")
    parser.add_argument("--oos-recall", type=float, default=0.75,
                        help="out-of-scope recall the CLINC150 probability threshold (the "
                             "earlier rule, shown beside) aims for on val")
    parser.add_argument("--reuse", action="store_true",
                        help="score the models an earlier run left in --work instead of "
                             "training them again (missing ones are trained)")
    parser.add_argument("--test-set", type=Path, default=None,
                        help="latency: score the telecom recognisers on a YAML file of turns "
                             "written apart from the pack (benchmarks/data/telecom_turns.yaml)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/voicedesk-bench-intent"))
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (args.data / "banking77").is_dir():
        parser.error(f"{args.data} has no banking77/ folder: pass --data to the folder that "
                     f"holds banking77/ and clinc150/")
    epochs = args.epochs or (8.0 if args.full else 1.0)

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    encoder = ModelStore(load_config().models_dir).embeddings("all-minilm-l6-v2")
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(),
                    "cores": os.cpu_count(), "load_average": os.getloadavg(),
                    "torch": version("torch"), "transformers": version("transformers"),
                    "mode": "full" if args.full else "quick", "epochs": epochs}
    if "banking77" in args.dataset:
        result["banking77"] = run_banking77(args.data, encoder, args.work, args.full, epochs, say,
                                            args.seeds, args.reuse)
    if "clinc150" in args.dataset:
        result["clinc150"] = run_clinc150(args.data, encoder, args.work, args.full, epochs,
                                          args.oos_recall, say, args.seeds,
                                          args.false_rejects, args.reuse)
    if "latency" in args.dataset:
        result["understanding"] = understanding_latency(encoder, args.work, say, args.test_set)
    result["load_average_after"] = os.getloadavg()

    print(f"\nintent benchmarks ({result['mode']}; {epochs:g} epochs; {cpu_model()}, "
          f"{os.cpu_count()} cores)")
    print(f"{'data set':<10} {'result':<34} {'train min':>9}  target")
    if "banking77" in result:
        b = result["banking77"]
        print(f"{'banking77':<10} {'accuracy ' + format(b['test_accuracy'], '.2%'):<34} "
              f"{b['train_minutes']:>9.1f}  {TARGETS['banking77']}")
    if "clinc150" in result:
        c = result["clinc150"]
        text = f"in-scope {c['in_scope_accuracy']:.2%}, OOS recall {c['oos_recall']:.2%}"
        print(f"{'clinc150':<10} {text:<34} {c['train_minutes']:>9.1f}  {TARGETS['clinc150']}")
        print(f"  in scope with no threshold: {c['accuracy_without_threshold']:.2%}")
        for rule in c["rules"].values():
            print(f"  {rule['rule']}: in-scope {rule['in_scope_accuracy']:.2%}, OOS recall "
                  f"{rule['oos_recall']:.2%} (threshold {rule['threshold']:.3f}; AUROC val "
                  f"{rule['val_auroc']:.4f}, test {rule['test_auroc']:.4f})")
    for name in ("banking77", "clinc150"):
        if name in result:
            print(f"anchors, {name}: " + "; ".join(f"{who} {fig}" for who, fig in ANCHORS[name]))
    if not args.full and ("banking77" in result or "clinc150" in result):
        print("quick mode trains on a slice for one epoch: its accuracies are a smoke test, "
              "not the reported figures (--full)")
    if "understanding" in result:
        for label, row in result["understanding"].items():
            if isinstance(row, dict):
                print(f"understanding, {label}: p50 {row['p50']:.0f} ms, p95 {row['p95']:.0f} ms"
                      f", intent accuracy {row['intent_accuracy']:.1%} (intent + slots, "
                      f"{row['turns']} held-out telecom turns; target <= 100 ms)")
    write_results(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
