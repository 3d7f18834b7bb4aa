"""``voicedesk train pretrain|finetune|asr|intent``, ``voicedesk verify`` and ``voicedesk models
promote|rollback``: the training loop from the command line.

A training command writes into one run folder (``--out``, default
``$VOICEDESK_HOME/runs/<kind>``); running the same command again resumes
from its last checkpoint, so Ctrl-C costs at most the steps since the last
checkpoint. The finished model is exported into ``OUT/model`` and registered
as a candidate version, ready for ``voicedesk verify``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from voicedesk.config import Config


def _say(message: str) -> None:
    print(f"voicedesk: {message}", file=sys.stderr, flush=True)


def _db(config: Config) -> Any:
    from training.store import CallStore

    return CallStore(config.database_url, config.audio_dir).engine


def _exported_hf(ref: str) -> str | None:
    """The ``hf/`` folder of an exported model given by its root, or None."""
    from training.export import MANIFEST, open_exported

    if ref and (Path(ref).expanduser() / MANIFEST).is_file():
        return str(open_exported(ref).serving_path("transformers"))
    return None


def _loop_options(args: argparse.Namespace, defaults: Any) -> Any:
    from dataclasses import replace

    changes = {"progress": True}
    for arg, key in (("epochs", "epochs"), ("max_steps", "max_steps"),
                     ("batch_size", "batch_size"), ("lr", "learning_rate"),
                     ("save_every", "save_every"), ("stop_after", "stop_after"),
                     ("threads", "threads"), ("seed", "seed")):
        value = getattr(args, arg, None)
        if value is not None:
            changes[key] = value
    return replace(defaults, **changes)


def _run_folder(config: Config, args: argparse.Namespace, kind: str) -> Path:
    # not home/"training": a folder named like the package shadows it under `python -m`
    out = Path(args.out) if args.out else config.home / "runs" / kind
    if args.restart and out.exists():
        _say(f"--restart: removing the earlier run in {out}")
        shutil.rmtree(out)
    return out


def _finish(config: Config, outcome: Any, out: Path) -> int:
    from training.registry import register

    loop = outcome.loop
    how = f"resumed at step {loop.resumed_from}, " if loop.resumed_from else ""
    print(f"trained {loop.steps} steps ({how}final loss {loop.final_loss:.4f}, "
          f"{loop.examples_per_s:.1f} examples/s) in {out}")
    if outcome.model is None:
        return 0
    version = register(_db(config), outcome.model.root, name=f"{out.name}-{loop.steps}",
                       training_run_id=outcome.run_id or None)
    print(f"model exported to {outcome.model.root} and registered as version {version.id} "
          f"({version.kind}, candidate); next: voicedesk verify {outcome.model.root}")
    return 0


def _interrupted(stop: Exception) -> int:
    _say(str(stop))
    return 130


def cmd_pretrain(config: Config, args: argparse.Namespace) -> int:
    from training.loop import TrainingInterrupted
    from training.pretrain import PretrainOptions, pretrain
    from training.runs import RunLog
    from training.task_examples import corpus_texts
    from voicedesk.models.prepare import ModelStore

    data = Path(args.data)
    texts = corpus_texts(data)  # bad data fails before a model loads
    base_ref = args.base or config.llm.model
    base = _exported_hf(base_ref) or ModelStore(config.models_dir).llm_hf(base_ref)
    defaults = PretrainOptions()
    options = PretrainOptions(method=args.method or "full", block_size=args.block_size,
                              loop=_loop_options(args, defaults.loop), export=not args.no_export)
    out = _run_folder(config, args, "pretrain")
    log = RunLog(_db(config), out, "pretrain", base_ref, vars_of(options), data)
    _say(f"continued pre-training of {base_ref} on {len(texts)} texts from {data} into {out}")
    try:
        outcome = pretrain(base, texts, out, options, log)
    except TrainingInterrupted as stop:
        return _interrupted(stop)
    return _finish(config, outcome, out)


def vars_of(options: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(options), default=str))


def _turns(config: Config, args: argparse.Namespace, split: str) -> list[Any]:
    from nlu.domain import load_domain
    from training.task_examples import (
        DataError,
        catalogue_only,
        description_examples,
        domain_split,
        general_turns,
        turn_examples,
    )

    name = config.nlu.domain if args.domain in (None, True) else args.domain
    domain = load_domain(name)
    examples = []
    if args.data:
        examples += catalogue_only(turn_examples(Path(args.data), split), domain, _say)
    if args.domain:
        examples += domain_split(domain, "train" if split == "train" else "test")
        if split == "train":
            examples += description_examples(domain)
    if getattr(args, "corpora", None) and split == "train":
        names = tuple(n for n in (args.general or "").split(",") if n) or tuple(
            domain.general_labels)
        examples += general_turns(Path(args.corpora), names, domain, "train", _say)
    if not examples and split == "train":
        raise DataError("no task data: give --data DATASET (a folder from the dataset builder) "
                        "and/or --domain (the domain pack's intent examples)")
    return examples


def cmd_finetune(config: Config, args: argparse.Namespace) -> int:
    from training.finetune import FinetuneOptions, finetune
    from training.loop import TrainingInterrupted
    from training.runs import RunLog
    from voicedesk.models.prepare import ModelStore

    examples = _turns(config, args, "train")
    validation: list[Any] = []
    if args.calibrate_retrieval:
        examples, validation = _validation(config, args, examples)
    base_ref = args.base or config.llm.model
    base = _exported_hf(base_ref) or ModelStore(config.models_dir).llm_hf(base_ref)
    defaults = FinetuneOptions()
    options = FinetuneOptions(method=args.method, with_reply=args.with_reply,
                              spoken_variants=not args.no_variants,
                              loop=_loop_options(args, defaults.loop), export=not args.no_export)
    out = _run_folder(config, args, "finetune")
    log = RunLog(_db(config), out, "finetune", base_ref, vars_of(options),
                 Path(args.data) if args.data else None)
    _say(f"{options.method} fine-tuning of {base_ref} on {len(examples)} turns into {out}")
    try:
        outcome = finetune(base, examples, out, options, log)
    except TrainingInterrupted as stop:
        return _interrupted(stop)
    if validation and outcome.model is not None:
        _choose_retrieval_weight(config, args, outcome.model, validation)
    return _finish(config, outcome, out)


def _validation(config: Config, args: argparse.Namespace, examples: list[Any]
                ) -> tuple[list[Any], list[Any]]:
    """(training turns, validation turns) for choosing the retrieval weight: the dataset's
    validation split when it has one, else a fifth of the task turns, held out of training
    (public corpora's rows always train)."""
    from nlu.domain import load_domain
    from training.data.corpora import READERS
    from training.task_examples import (
        DataError,
        catalogue_only,
        turn_examples,
        validation_split,
    )

    if args.data and (Path(args.data) / "validation.jsonl").is_file():
        domain = load_domain(config.nlu.domain)
        validation = catalogue_only(turn_examples(Path(args.data), "validation"), domain, _say)
        if validation:
            _say(f"the retrieval weight is chosen on the dataset's {len(validation)} "
                 f"validation turns")
            return examples, validation
    task = [e for e in examples if e.source not in READERS]
    fit, validation = validation_split(task)
    if not validation:
        raise DataError("--calibrate-retrieval needs at least three turns of an intent to hold "
                        "one out; give --data with a validation split")
    _say(f"held out {len(validation)} of the {len(task)} task turns to choose the retrieval "
         f"weight on (not trained on)")
    return fit + [e for e in examples if e.source in READERS], validation


def _choose_retrieval_weight(config: Config, args: argparse.Namespace, model: Any,
                             validation: list[Any]) -> None:
    from nlu.domain import load_domain
    from nlu.embeddings import SentenceEmbedder
    from training.retrieval_weight import best_weight, score_weights, write_weight
    from training.task_examples import domain_split, without_examples
    from training.verify import load_llm
    from voicedesk.models.prepare import ModelStore

    domain = load_domain(config.nlu.domain)
    if args.domain:  # the pack's held-out part stays out of retrieval, as in verify --domain
        domain = without_examples(domain, domain_split(domain, "test"))
    embedder = SentenceEmbedder(ModelStore(config.models_dir).embeddings(config.nlu.embeddings))
    engine = load_llm(config, str(model.serving_path(config.llm.engine))).engine
    accuracy = score_weights(engine, embedder, domain, validation,
                             config.nlu.examples_per_turn, say=_say)
    weight = best_weight(accuracy)
    write_weight(model.root, weight, accuracy, len(validation))
    print(f"retrieval weight {weight:g} (intent accuracy on {len(validation)} validation turns: "
          + ", ".join(f"{w:g} {a:.3f}" for w, a in accuracy.items()) + ")")


def cmd_asr(config: Config, args: argparse.Namespace) -> int:
    from training.asr_finetune import AsrFinetuneOptions, finetune_whisper
    from training.loop import TrainingInterrupted
    from training.runs import RunLog
    from training.task_examples import audio_examples
    from voicedesk.models.prepare import ModelStore

    data = Path(args.data)
    clips = audio_examples(data, "train")
    base_ref = args.base or config.asr.model
    base = _exported_hf(base_ref) or ModelStore(config.models_dir).whisper_hf(base_ref)
    defaults = AsrFinetuneOptions()
    options = AsrFinetuneOptions(train="all" if args.train_encoder else args.train,
                                 loop=_loop_options(args, defaults.loop),
                                 export=not args.no_export)
    out = _run_folder(config, args, "asr")
    log = RunLog(_db(config), out, "asr", base_ref, vars_of(options), data)
    _say(f"Whisper fine-tuning of {base_ref} on {len(clips)} clips into {out}")
    try:
        outcome = finetune_whisper(base, clips, out, options, log)
    except TrainingInterrupted as stop:
        return _interrupted(stop)
    return _finish(config, outcome, out)


def cmd_intent(config: Config, args: argparse.Namespace) -> int:
    from nlu.domain import load_domain
    from nlu.intent_classifier import IntentClassifier
    from training.intent_classifier import (
        FALSE_REJECTS,
        ClassifierOptions,
        calibrate,
        domain_training_set,
        train_classifier,
    )
    from training.loop import TrainingInterrupted
    from training.runs import RunLog
    from training.task_examples import DataError, catalogue_only, turn_examples
    from voicedesk.models.prepare import ModelStore

    domain = load_domain(config.nlu.domain)
    texts: list[str] = []
    labels: list[str] = []
    data = Path(args.data) if args.data else None
    if data is not None:
        turns = catalogue_only(turn_examples(data, "train"), domain, _say)
        texts, labels = [t.text for t in turns], [t.intent for t in turns]
    if args.domain or data is None:
        more_texts, more_labels = domain_training_set(domain)
        texts, labels = texts + more_texts, labels + more_labels
    if not texts:
        raise DataError(f"{data} has no turns with {domain.name} intents to train on")
    defaults = ClassifierOptions()
    options = ClassifierOptions(loop=_loop_options(args, defaults.loop))
    out = _run_folder(config, args, "intent")
    log = RunLog(_db(config), out, "intent", config.nlu.embeddings, vars_of(options), data)
    _say(f"fine-tuning {config.nlu.embeddings} into an intent classifier on {len(texts)} turns "
         f"({len(set(labels))} intents) into {out}")
    try:
        outcome = train_classifier(ModelStore(config.models_dir).embeddings(
            config.nlu.embeddings), texts, labels, out, options, log)
    except TrainingInterrupted as stop:
        return _interrupted(stop)
    loop = outcome.loop
    print(f"trained {loop.steps} steps (final loss {loop.final_loss:.4f}, "
          f"{loop.examples_per_s:.1f} examples/s) in {out}")
    if data is not None and (data / "validation.jsonl").is_file():
        dev = catalogue_only(turn_examples(data, "validation"), domain, _say)
        dev_labels = [t.intent for t in dev]
        if "out_of_scope" in dev_labels and set(dev_labels) != {"out_of_scope"}:
            threshold = calibrate(IntentClassifier(outcome.model_dir), [t.text for t in dev],
                                  dev_labels)
            print(f"out-of-scope threshold {threshold:.3f} (cosine with the nearest intent), "
                  f"calibrated to reject at most {FALSE_REJECTS:.0%} of the {len(dev)} "
                  f"validation turns' in-scope ones")
    print(f"classifier in {outcome.model_dir}; serve it with [nlu] intent_classifier = "
          f'"{outcome.model_dir}" (or VOICEDESK_NLU_INTENT_CLASSIFIER)')
    return 0


def _manifest_clips(path: Path) -> list[Any]:
    from asr.evaluation import read_manifest
    from training.task_examples import AudioExample

    return [AudioExample(row.audio, row.reference) for row in read_manifest(path)]


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    from training.export import open_exported
    from training.gates import load_gates
    from training.registry import record_verification, served
    from training.task_examples import audio_examples
    from training.verify import SCENARIOS, VerifyOptions, verify
    from training.verify_report import write_report

    candidate = open_exported(args.candidate)  # an incomplete folder stops here
    gates = load_gates(Path(args.gates) if args.gates else None)
    options = VerifyOptions(gates=gates)
    if candidate.kind == "llm":
        options.turns = _turns(config, args, "test")
        options.scenarios = None if args.no_scenarios else Path(args.scenarios or SCENARIOS)
    else:
        if args.data:
            options.clips = audio_examples(Path(args.data), "test")
        if args.general:
            options.general_clips = _manifest_clips(Path(args.general))
    db = _db(config)
    current = served(db)
    promoted = current.llm if candidate.kind == "llm" else current.asr
    baseline = promoted.exported() if promoted else None
    verdict = verify(candidate.root, config, options, baseline, say=_say)
    report = Path(args.report) if args.report else candidate.root / "verification.md"
    written = write_report(verdict, report)
    version = record_verification(db, candidate.root, verdict.passed, verdict.metrics,
                                  verdict.gates, str(report))
    width = max(len(g["metric"]) for g in verdict.gates) if verdict.gates else 10
    for gate in verdict.gates:
        print(f"{gate['metric']:<{width}}  candidate {_num(gate['candidate']):>9}  baseline "
              f"{_num(gate['baseline']):>9}  {gate['status']:<7} {gate.get('why', '')}")
    print(f"\n{'PASSED' if verdict.passed else 'FAILED'}: version {version.id} "
          f"({version.status}); report in {', '.join(str(p) for p in written)}")
    if args.json:
        Path(args.json).write_text(json.dumps(verdict.to_json(), indent=2, default=str) + "\n")
    return 0 if verdict.passed else 1


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def cmd_promote(config: Config, args: argparse.Namespace) -> int:
    from training.registry import promote

    version = promote(_db(config), args.version, force=args.force)
    print(f"promoted {version.kind} version {version.id} ({version.name}): {version.path}; "
          f"running services switch to it between turns")
    return 0


def cmd_rollback(config: Config, args: argparse.Namespace) -> int:
    from training.registry import rollback

    withdrawn, restored = rollback(_db(config), args.kind)
    now = (f"version {restored.id} ({restored.name})" if restored else
           f"the configured model ({config.llm.model if args.kind == 'llm' else config.asr.model})")
    print(f"rolled back {args.kind} version {withdrawn.id} ({withdrawn.name}); now serving {now}")
    return 0


def print_versions(config: Config) -> None:
    from training.registry import versions

    rows = versions(_db(config))
    if not rows:
        print("registered versions: none (the configured models serve)")
        return
    print("\nregistered versions:")
    for v in rows:
        print(f"{v.id:>4}  {v.kind:<4} {v.status:<9} {v.name:<32} {v.path}")


def _add_loop_args(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--out", help=f"run folder (default: $VOICEDESK_HOME/runs/{kind}); "
                                      f"the same folder resumes a stopped run")
    parser.add_argument("--restart", action="store_true",
                        help="discard an earlier run in --out instead of resuming it")
    parser.add_argument("--epochs", type=float, help="passes over the data")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--save-every", type=int, help="steps between checkpoints")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-export", action="store_true",
                        help="keep checkpoints only; no serving formats")
    parser.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: a stop


def register(sub: Any, models_sub: Any) -> None:
    """Add ``train`` and ``verify`` to the command, ``promote``/``rollback`` to ``models``."""
    train = sub.add_parser("train", help="pre-train, fine-tune and export models (resumable)")
    train_sub = train.add_subparsers(dest="action", required=True)

    pre = train_sub.add_parser("pretrain", help="continued pre-training of the LLM on domain "
                               "text (DATASET/corpus.jsonl)")
    pre.add_argument("--data", required=True, metavar="DATASET", help="dataset folder")
    pre.add_argument("--base", help="LLM to start from (default: llm.model)")
    pre.add_argument("--method", choices=("full", "lora"), default="full")
    pre.add_argument("--block-size", type=int, default=256, help="tokens per sequence")
    _add_loop_args(pre, "pretrain")
    pre.set_defaults(func=cmd_pretrain)

    fine = train_sub.add_parser("finetune", help="supervised fine-tuning of the LLM on the turn "
                                "task (intent, slots, reply)")
    fine.add_argument("--data", metavar="DATASET", help="dataset folder (train.jsonl)")
    fine.add_argument("--domain", nargs="?", const=True, default=None, metavar="PACK",
                      help="also train on the domain pack's intent examples (default pack: "
                           "nlu.domain); their held-out part is kept for verify --domain")
    fine.add_argument("--base", help="LLM to start from (default: llm.model; an exported "
                                     "pre-training output works too)")
    fine.add_argument("--method", choices=("lora", "full"), default="lora")
    fine.add_argument("--with-reply", action="store_true", help="also learn the replies")
    fine.add_argument("--no-variants", action="store_true",
                      help="train on the texts as given, without spoken-style copies")
    fine.add_argument("--calibrate-retrieval", action="store_true",
                      help="choose how much the nearest examples' vote counts beside the tuned "
                           "model, on validation turns (the dataset's validation split, else a "
                           "fifth of the task turns held out of training); written into the "
                           "model's marker")
    fine.add_argument("--corpora", metavar="DIR",
                      help="also train on public intent corpora under DIR (nlu/clinc150/, "
                           "nlu/banking77/), the rows whose labels the pack's "
                           "general_labels.yaml maps onto its catalogue")
    fine.add_argument("--general", metavar="NAMES",
                      help="with --corpora: which corpora, comma-separated (default: those "
                           "general_labels.yaml names)")
    _add_loop_args(fine, "finetune")
    fine.set_defaults(func=cmd_finetune)

    asr = train_sub.add_parser("asr", help="fine-tune Whisper on reviewed call audio "
                               "(DATASET/asr/train.jsonl)")
    asr.add_argument("--data", required=True, metavar="DATASET", help="dataset folder")
    asr.add_argument("--base", help="Whisper model to start from (default: asr.model)")
    asr.add_argument("--train", choices=("encoder", "decoder", "all"), default="encoder",
                     help="what learns: the encoder (default: adapts to the line and the "
                     "voices, keeps the decoder's spelling), the decoder, or all")
    asr.add_argument("--train-encoder", action="store_true",
                     help="the same as --train all (kept for older scripts)")
    _add_loop_args(asr, "asr")
    asr.set_defaults(func=cmd_asr)

    intent = train_sub.add_parser("intent", help="fine-tune the sentence encoder into the "
                                  "intent classifier (domain pack and/or DATASET/train.jsonl)")
    intent.add_argument("--data", metavar="DATASET", help="dataset folder (train.jsonl; "
                        "validation.jsonl calibrates the out-of-scope threshold)")
    intent.add_argument("--domain", action="store_true",
                        help="also train on the domain pack's examples (always, without --data)")
    _add_loop_args(intent, "intent")
    intent.set_defaults(func=cmd_intent)

    verify = sub.add_parser(
        "verify", help="evaluate a candidate model against the promoted one; gates decide",
        description="Evaluate CANDIDATE (an exported model folder) and the promoted model (or "
                    "the configured one) on the same held-out data, apply the gates (defaults, "
                    "or --gates FILE.toml), write a report and record the verdict. Exit status "
                    "0 if every gate passed, 1 otherwise.")
    verify.add_argument("candidate", metavar="CANDIDATE")
    verify.add_argument("--data", metavar="DATASET",
                        help="dataset folder: test.jsonl (LLM) or asr/test.jsonl (Whisper)")
    verify.add_argument("--domain", nargs="?", const=True, default=None, metavar="PACK",
                        help="LLM: also the domain pack's held-out intent examples")
    verify.add_argument("--general", metavar="MANIFEST.tsv",
                        help="Whisper: a general set too (file<TAB>reference lines)")
    verify.add_argument("--scenarios", metavar="FILE", help="scenario suite (default: the "
                        "telecom pack's scenarios.yaml)")
    verify.add_argument("--no-scenarios", action="store_true", help="skip the scenario suite")
    verify.add_argument("--gates", metavar="FILE.toml", help="gate tolerances")
    verify.add_argument("--report", metavar="PATH",
                        help="report .md (with .svg) or .html; JSON beside it "
                             "(default: CANDIDATE/verification.md)")
    verify.add_argument("--json", metavar="PATH", help="also write the verdict JSON here")
    verify.set_defaults(func=cmd_verify)

    promote = models_sub.add_parser("promote", help="serve a verified model version")
    promote.add_argument("version", help="version id or name (`voicedesk models list`), or an "
                                         "exported model folder")
    promote.add_argument("--force", action="store_true",
                         help="promote without a passed verification")
    promote.set_defaults(func=cmd_promote)

    back = models_sub.add_parser("rollback", help="restore the previously promoted model")
    back.add_argument("kind", choices=("llm", "asr"))
    back.set_defaults(func=cmd_rollback)

    listing = models_sub.choices.get("list")
    if listing is not None:
        original = listing.get_default("func")

        def list_all(config: Config, args: argparse.Namespace) -> int:
            code = int(original(config, args)) if original else 0
            print_versions(config)
            return code

        listing.set_defaults(func=list_all)
