"""``voicedesk data``: the store's calls as training data, step by step.

stats -> clean (see what would be left out) -> redact (scrub the store, if
retention requires) -> annotate (model labels) -> review-export / review-import
(people confirm or correct, least sure first) -> build-dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from voicedesk.errors import VoicedeskError


def _say(message: str) -> None:
    print(f"voicedesk: {message}", file=sys.stderr, flush=True)


def _store(config: Any) -> Any:
    from training.store import CallStore

    return CallStore(config.database_url, config.audio_dir)


def _domain(config: Any) -> Any:
    from nlu.domain import load_domain

    return load_domain(config.nlu.domain)


def _cleaning(args: argparse.Namespace) -> Any:
    from training.data.clean import CleaningOptions

    if args.min_words < 0 or args.max_words < args.min_words:
        raise VoicedeskError(f"--min-words {args.min_words} --max-words {args.max_words}: give "
                             f"0 <= min <= max")
    return CleaningOptions(min_asr_confidence=args.min_confidence, min_words=args.min_words,
                           max_words=args.max_words, drop_duplicates=not args.keep_duplicates)


def _policy(args: argparse.Namespace) -> Any:
    from training.data.pii import RedactionPolicy

    return RedactionPolicy.only(args.kinds)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _interrupted(what: str, done: int) -> None:
    _say(f"{what} interrupted after {done}; what is done is saved: run the same command again "
         f"to resume")


def cmd_stats(config: Any, args: argparse.Namespace) -> int:
    from training.data.stats import store_stats

    stats = store_stats(_store(config), _cleaning(args))
    if args.json:
        _print_json(stats)
        return 0
    print(f"calls {stats['calls']}, turns {stats['turns']}, reviewed {stats['reviewed_turns']}, "
          f"model-labelled {stats['model_labelled_turns']}")
    print(f"annotations by source: {stats['annotations'] or 'none'}")
    clean = stats["cleaning"]
    left_out = ", ".join(f"{n} {r}" for r, n in clean["reasons"].items() if n) or "none"
    print(f"fit for training: {clean['kept']} of {clean['turns']} turns (left out: {left_out})")
    print(f"redacted so far (counts): {stats['redactions'] or 'none'}")
    print("intents: " + (", ".join(f"{k} {v}" for k, v in stats["intents"].items()) or "none"))
    for d in stats["datasets"]:
        print(f"dataset {d['name']} v{d['version']}  {d['created_at']}  {d['path']}")
    return 0


def cmd_clean(config: Any, args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from training.data.clean import clean
    from training.data.labels import views

    store = _store(config)
    with Session(store.engine) as session:
        turns = views(session)
    report = clean(turns, _cleaning(args))
    result = report.to_json()
    if args.list:
        result["dropped_turns"] = [{"turn_id": t, "reason": r}
                                   for t, r in sorted(report.dropped.items())]
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['kept']} of {result['turns']} turns kept, {result['dropped']} left out")
    for reason, n in result["reasons"].items():
        print(f"  {reason:<15} {n}")
    for row in result.get("dropped_turns", []):
        print(f"  turn {row['turn_id']}: {row['reason']}")
    print("cleaning filters turns when they are exported or built into a dataset; the store "
          "keeps every turn")
    return 0


def cmd_redact(config: Any, args: argparse.Namespace) -> int:
    from training.data.redact import redact_store

    store = _store(config)
    done = [0]
    try:
        report = redact_store(store, _policy(args), dry_run=args.dry_run,
                              show_progress=not args.quiet,
                              on_call=lambda n: done.__setitem__(0, n))
    except KeyboardInterrupt:
        _interrupted("redaction", done[0] if not args.dry_run else 0)
        raise
    result = report.to_json()
    if args.json:
        _print_json(result)
        return 0
    verb = "would redact" if args.dry_run else "redacted"
    counts = ", ".join(f"{k} {v}" for k, v in result["counts"].items()) or "nothing"
    print(f"{verb}: {counts} in {result['turns_redacted']} of {result['turns_scanned']} turns "
          f"({result['calls_redacted']} of {result['calls_scanned']} calls)")
    print(f"audio silenced: {result['audio_seconds_silenced']:.1f} s; whole turns silenced "
          f"(data the word times could not place): {result['whole_turns_silenced']}; reply "
          f"audio dropped: {result['reply_audio_dropped']}; reviewer annotations scrubbed: "
          f"{result['annotations_redacted']}")
    return 0


def cmd_annotate(config: Any, args: argparse.Namespace) -> int:
    from nlu.embeddings import SentenceEmbedder
    from nlu.llm.engine import create_engine
    from nlu.understanding import IntentRecognizer
    from training.data.annotate import auto_label
    from training.intent_classifier import configured_classifier
    from voicedesk.models.prepare import ModelStore

    store = _store(config)
    _say("loading the intent models (LLM and embeddings) to label turns")
    models = ModelStore(config.models_dir)
    llm = create_engine(config.llm, models)
    domain = _domain(config)
    recognizer = IntentRecognizer(llm, SentenceEmbedder(models.embeddings(config.nlu.embeddings)),
                                  domain, config.nlu.examples_per_turn,
                                  config.nlu.retrieval_weight,
                                  classifier=configured_classifier(config, domain, models),
                                  confident=config.nlu.classifier_confident)
    # The same names Assistant.describe() gives these models, so labels compare across tools.
    author = (f"{llm.name}:{config.llm.model}+{config.nlu.embeddings}"
              f"+{config.nlu.intent_classifier}")[:128]
    done = [0]
    try:
        report = auto_label(store, recognizer.understand, author,
                            show_progress=not args.quiet,
                            on_turn=lambda n: done.__setitem__(0, n))
    except KeyboardInterrupt:
        _interrupted("auto-labelling", done[0])
        raise
    print(f"labelled {report.labelled} turn(s) with {author}; {report.skipped_done} already "
          f"labelled by it, {report.skipped_empty} empty")
    return 0


def cmd_review_export(config: Any, args: argparse.Namespace) -> int:
    from training.data.annotate import review_queue
    from training.data.labelstudio import label_config, task, write_tasks
    from training.data.redact import redacted_audio
    from training.data.review_files import export_row, write_jsonl

    store = _store(config)
    policy = _policy(args)
    out = Path(args.out)
    queue = review_queue(store, _cleaning(args), args.limit, include_reviewed=args.all)
    audio_dir = out.parent / f"{out.stem}_audio"

    def audio_for(view: Any) -> str | None:
        if not args.audio:
            return None
        audio = redacted_audio(store, view, policy)
        if audio is None:
            return None
        import soundfile as sf

        audio_dir.mkdir(parents=True, exist_ok=True)
        name = f"turn-{view.turn_id}.flac"
        sf.write(str(audio_dir / name), audio.samples, audio.sample_rate, format="FLAC",
                 subtype="PCM_16")
        return f"{args.audio_url}{name}" if args.audio_url else f"{audio_dir.name}/{name}"

    if args.format == "labelstudio":
        write_tasks(out, [task(v, policy, audio_for(v)) for v in queue])
        xml = out.with_name(f"{out.stem}.label_config.xml")
        intents = list(_domain(config).intents)
        xml.write_text(label_config(intents, audio=args.audio), encoding="utf-8")
        print(f"{len(queue)} task(s), least confident first, in {out}; labelling interface "
              f"in {xml}")
    else:
        n = write_jsonl(out, (export_row(v, policy, audio_for(v)) for v in queue))
        print(f"{n} turn(s), least confident first, in {out}: set \"intent\" (and fix "
              f"\"transcript\" if it is wrong), add \"reviewer\", then `voicedesk data "
              f"review-import {out}`")
    return 0


def cmd_review_import(config: Any, args: argparse.Namespace) -> int:
    from training.data.labelstudio import read_tasks
    from training.data.review_files import ImportReport, apply_rows, read_jsonl_rows

    path = Path(args.file)
    if not path.is_file():
        raise VoicedeskError(f"review file {path} not found")
    kind = args.format
    if kind == "auto":
        head = path.read_text(encoding="utf-8", errors="replace").lstrip()[:1]
        kind = "labelstudio" if head == "[" else "jsonl"
    rows, errors = read_tasks(path) if kind == "labelstudio" else read_jsonl_rows(path)
    report = ImportReport(errors=list(errors))
    report.rows = len(errors)
    store = _store(config)
    intents = set(_domain(config).intents)
    apply_rows(store, rows, intents, _policy(args), args.reviewer, report)
    for line, problem in report.errors:
        print(f"{path}:{line}: {problem}", file=sys.stderr)
    if args.json:
        _print_json(report.to_json())
    else:
        print(f"imported {report.reviewed_turns} reviewed turn(s) ({report.annotations} "
              f"new annotation(s), {report.unchanged} unchanged, {report.skipped} without a "
              f"review) from {path}; {len(report.errors)} row(s) rejected")
    if report.errors:
        _say(f"{len(report.errors)} row(s) of {path} could not be imported (listed above with "
             f"their line numbers); the other rows were imported. Fix those lines and import "
             f"the file again: rows already imported are not duplicated")
        return 1
    return 0


def cmd_build_dataset(config: Any, args: argparse.Namespace) -> int:
    from training.data.fusion import BuildOptions, build_dataset

    try:
        fractions = tuple(float(x) for x in args.split.split(","))
    except ValueError:
        fractions = ()
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise VoicedeskError(f"--split {args.split}: give three non-negative fractions for "
                             f"train,validation,test such as 0.8,0.1,0.1")
    general = () if args.general in ("", "none") else tuple(
        g.strip() for g in args.general.split(",") if g.strip())
    options = BuildOptions(name=args.name, seed=args.seed,
                           fractions=fractions,  # type: ignore[arg-type]
                           corpora_dir=Path(args.corpora) if args.corpora else None,
                           general=general, general_limit=args.general_limit,
                           knowledge=not args.no_knowledge, asr=not args.no_asr,
                           cleaning=_cleaning(args), policy=_policy(args))
    domain = _domain(config)
    done = [0]
    try:
        result = build_dataset(_store(config), Path(args.out), options, list(domain.intents),
                               domain.knowledge_dir, show_progress=not args.quiet,
                               on_audio=lambda n: done.__setitem__(0, n))
    except KeyboardInterrupt:
        _interrupted("dataset build", done[0])
        raise
    m = result.manifest
    splits = ", ".join(f"{s} {v['examples']} ({v['asr']} audio)" for s, v in m["splits"].items())
    print(f"dataset {result.name} version {result.version} in {result.path}")
    print(f"examples: {splits}; corpus {m['corpus']} text(s)")
    counts = ", ".join(f"{k} {v}" for k, v in m["redaction"]["counts"].items()) or "nothing"
    print(f"redacted: {counts}; cleaning left out {m['cleaning']['dropped']} of "
          f"{m['cleaning']['turns']} reviewed turn(s)")
    if result.audio_reused:
        print(f"resumed: {result.audio_reused} audio file(s) reused from the interrupted build")
    return 0


def _add_cleaning(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cleaning")
    group.add_argument("--min-confidence", type=float, default=0.4,
                       help="leave out turns whose ASR confidence (mean word probability) is "
                            "below this, unless a reviewer fixed the transcript (default 0.4)")
    group.add_argument("--min-words", type=int, default=1, help="shortest turn kept (words)")
    group.add_argument("--max-words", type=int, default=120, help="longest turn kept (words)")
    group.add_argument("--keep-duplicates", action="store_true",
                       help="keep repeated turns (same words in a call, or the same audio)")


def _add_kinds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kinds", help="PII kinds to redact, comma-separated, from card_number, "
                        "phone_number, email, account_number, pin, date_of_birth (default: "
                        "all; card_number is always on)")


def register(sub: Any) -> None:
    """Add ``voicedesk data ...`` to the top-level subcommands."""
    data = sub.add_parser("data", help="calls as training data: clean, redact, annotate, "
                          "review, build datasets", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = data.add_subparsers(dest="action", required=True)

    stats = actions.add_parser("stats", help="what the store holds for training")
    stats.add_argument("--json", action="store_true", help="print JSON")
    _add_cleaning(stats)
    stats.set_defaults(func=cmd_stats)

    clean = actions.add_parser("clean", help="which turns the cleaning filters leave out, and "
                               "why (empty, garbled, duplicate, low confidence, length)")
    clean.add_argument("--json", action="store_true", help="print JSON")
    clean.add_argument("--list", action="store_true", help="list every left-out turn")
    _add_cleaning(clean)
    clean.set_defaults(func=cmd_clean)

    redact = actions.add_parser(
        "redact", help="scrub personal data from the stored calls (text, words, audio)",
        description="Replace card numbers, phone numbers, e-mail addresses, account numbers, "
                    "PINs and dates of birth in stored transcripts, words, replies, slots and "
                    "review annotations, and silence them in the caller audio (turn and whole "
                    "call). Resumable: an interrupted run continues where it stopped. Exports "
                    "and datasets are always redacted whether or not this was run.")
    _add_kinds(redact)
    redact.add_argument("--dry-run", action="store_true", help="report, change nothing")
    redact.add_argument("--json", action="store_true", help="print the report as JSON")
    redact.add_argument("--quiet", action="store_true", help="no progress bar")
    redact.set_defaults(func=cmd_redact)

    annotate = actions.add_parser("annotate", help="label every turn's intent with the current "
                                  "models (resumable)")
    annotate.add_argument("--quiet", action="store_true", help="no progress bar")
    annotate.set_defaults(func=cmd_annotate)

    export = actions.add_parser("review-export", help="write the review queue, least confident "
                                "first, redacted (JSONL or Label Studio tasks)")
    export.add_argument("--out", required=True, help="file to write (.jsonl or .json)")
    export.add_argument("--format", choices=["jsonl", "labelstudio"], default="jsonl")
    export.add_argument("--limit", type=int, help="at most this many turns")
    export.add_argument("--all", action="store_true", help="include turns already reviewed")
    export.add_argument("--audio", action="store_true",
                        help="also write each turn's redacted audio next to the file")
    export.add_argument("--audio-url", default="",
                        help="prefix for audio links (e.g. where Label Studio serves them)")
    _add_kinds(export)
    _add_cleaning(export)
    export.set_defaults(func=cmd_review_export)

    imp = actions.add_parser("review-import", help="record reviewers' labels from a JSONL file "
                             "or a Label Studio JSON export")
    imp.add_argument("file")
    imp.add_argument("--format", choices=["auto", "jsonl", "labelstudio"], default="auto")
    imp.add_argument("--reviewer", help="reviewer for rows that do not name one")
    imp.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_kinds(imp)
    imp.set_defaults(func=cmd_review_import)

    build = actions.add_parser("build-dataset", help="write a versioned dataset (JSONL and "
                               "audio plus manifest.json) from reviewed turns and general data")
    build.add_argument("--out", required=True, help="dataset folder (new, or an interrupted "
                       "build to resume)")
    build.add_argument("--name", default="voicedesk", help="dataset name; versions count up "
                       "per name")
    build.add_argument("--seed", type=int, default=13, help="split seed (default 13)")
    build.add_argument("--split", default="0.8,0.1,0.1", help="train,validation,test fractions")
    build.add_argument("--corpora", help="folder of public corpora (nlu/banking77, "
                       "nlu/clinc150, ...) to mix in")
    build.add_argument("--general", default="banking77,clinc150",
                       help="which corpora under --corpora to use, or 'none'")
    build.add_argument("--general-limit", type=int, default=1000,
                       help="train examples per corpus (validation and test get a quarter)")
    build.add_argument("--no-knowledge", action="store_true",
                       help="leave the knowledge base out of corpus.jsonl")
    build.add_argument("--no-asr", action="store_true", help="no audio (asr/) part")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_kinds(build)
    _add_cleaning(build)
    build.set_defaults(func=cmd_build_dataset)
