"""The ``voicedesk`` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from training import train_cli
from training.data.cli import register as register_data
from voice.mic import register as register_talk
from voice.serve import register as register_serve
from voicedesk.config import Config, load_config, render_toml
from voicedesk.errors import VoicedeskError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _progress(message: str) -> None:
    print(f"voicedesk: {message}", file=sys.stderr, flush=True)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_turn_table(result: object) -> None:
    from voice.file_call import CallResult

    assert isinstance(result, CallResult)
    header = (f"{'#':>2}  {'caller said':<38} {'intent':<22} {'reply':<44} "
              f"{'end':>5} {'asr':>5} {'nlu':>5} {'say':>5} {'tts':>5} {'v2v':>6}")
    print(header)
    print("-" * len(header))
    for turn in result.turns:
        lat = turn.latency_ms
        print(f"{turn.index + 1:>2}  {_cut(turn.transcript.text, 38):<38} "
              f"{_cut(f'{turn.outcome.intent} {turn.outcome.confidence:.2f}', 22):<22} "
              f"{_cut(turn.reply.text, 44):<44} {lat['endpoint_ms']:>5.0f} {lat['asr_ms']:>5.0f} "
              f"{lat['nlu_ms']:>5.0f} {lat['first_sentence_ms']:>5.0f} "
              f"{lat['tts_first_audio_ms']:>5.0f} {lat['voice_to_voice_ms']:>6.0f}")
    print("latencies in ms: end = endpointing wait, nlu = intent, slots and flow, "
          "say = first sentence ready, tts = first audio, v2v = end of speech to first reply audio")
    summary = result.summary
    print(f"\noutcome: {summary['disposition']}; {summary['text']}")


def cmd_call(config: Config, args: argparse.Namespace) -> int:
    from asr.audio import load_audio
    from training.store import CallStore
    from voice.assistant import Assistant
    from voice.file_call import prepare_out_dir, run_file_call
    from voice.vad import split_turns

    audio = Path(args.audio)
    # Check the cheap things before loading any model: a typo should fail in a second.
    caller = load_audio(audio, channel=args.channel)
    if not split_turns(caller, config.vad):
        raise VoicedeskError(f"no speech found in {audio} ({caller.duration:.1f} s of audio is "
                             f"silence or noise)")
    prepare_out_dir(Path(args.out) if args.out else None)
    _progress("loading models (first run prepares them once; see `voicedesk models list`)")
    started = time.perf_counter()
    assistant = Assistant.load(config)
    store = CallStore(config.database_url, config.audio_dir)
    _progress(f"models ready in {time.perf_counter() - started:.1f} s; answering {audio}")
    result = run_file_call(assistant, store, audio, Path(args.out) if args.out else None,
                           args.channel,
                           on_turn=lambda t: _progress(f"turn {t.index + 1}: "
                                                       f"{_cut(t.transcript.text, 60)}"))
    print_turn_table(result)
    print(f"\ncall {result.call_id} stored in {_redact(config.database_url)}")
    print(f"outputs in {result.out_dir}: conversation.wav (left caller, right assistant), "
          f"transcript.json, transcript.txt")
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    path = EXAMPLES / f"{args.example}.flac"
    if not path.is_file():
        names = sorted(p.stem for p in EXAMPLES.glob("*.flac"))
        raise VoicedeskError(f"no example call named {args.example!r}; examples: "
                             f"{', '.join(names) or 'none found in ' + str(EXAMPLES)}")
    reference = path.with_suffix(".txt")
    if reference.is_file():
        print("The caller says (one turn a line):")
        for line in reference.read_text().splitlines():
            print(f"  > {line}")
        print()
    args.audio = str(path)
    args.channel = None
    code = cmd_call(config, args)
    print("listen: play conversation.wav in that folder (e.g. `aplay` or any audio player)")
    return code


def cmd_config_show(config: Config, args: argparse.Namespace) -> int:
    print(render_toml(config), end="")
    return 0


def cmd_models_list(config: Config, args: argparse.Namespace) -> int:
    from voicedesk.models.registry import ModelRegistry

    registry = ModelRegistry(config.models_dir)
    for model in registry.bundled:
        try:
            registry.verified_files(model.name)
            state = "ok"
        except VoicedeskError as exc:
            state = f"PROBLEM: {exc}"
        aliases = f" ({', '.join(model.aliases)})" if model.aliases else ""
        print(f"{model.role:<11} {model.name + aliases:<42} {state}")
    print(f"cache: {config.models_dir}")
    return 0


def cmd_models_prepare(config: Config, args: argparse.Namespace) -> int:
    from voicedesk.models.prepare import ModelStore

    store = ModelStore(config.models_dir)
    print(f"asr        {store.whisper_ct2(config.asr.model)}")
    print(f"llm (hf)   {store.llm_hf(config.llm.model)}")
    print(f"llm (ct2)  {store.llm_ct2(config.llm.model, config.llm.compute_type)}")
    print(f"tts        {store.piper_voice(config.tts.voice)}")
    print(f"embeddings {store.embeddings(config.nlu.embeddings)}")
    if config.nlu.intent_classifier == "domain":
        from nlu.domain import load_domain
        from training.intent_classifier import domain_classifier

        domain = load_domain(config.nlu.domain)
        print(f"intents    {domain_classifier(domain, store, config.nlu.embeddings)}")
    return 0


def cmd_simulate(config: Config, args: argparse.Namespace) -> int:
    import json

    from nlu.scenarios import AudioHearing, load_scenarios, report, run_scenarios, text_mode
    from voice.assistant import Assistant

    path = Path(args.file)
    calls = load_scenarios(path)["calls"]  # a malformed file fails before any model loads
    hear = text_mode
    voice = None
    if args.audio:
        from voice.espeak_tts import EspeakSynthesizer

        voice = EspeakSynthesizer()  # a voice other than the assistant's
    _progress(f"loading models to run {len(calls)} scripted call(s) from {path}")
    assistant = Assistant.load(config)
    if voice is not None:
        hear = AudioHearing(assistant.transcriber, voice)
    results = run_scenarios(path, assistant.dialogue, hear, on_call=lambda r: _progress(
        f"{'pass' if r.passed else 'FAIL'}: {r.name}"))
    summary = report(results)
    width = max(len(r.name) for r in results)
    print(f"{'call':<{width}}  result")
    print("-" * (width + 8))
    for result in results:
        print(f"{result.name:<{width}}  {'pass' if result.passed else 'FAIL'}")
        problems = result.failures + [f"turn {i + 1}: {f}" for i, t in enumerate(result.turns)
                                      for f in t.failures]
        for problem in problems:
            print(f"{'':<{width}}    - {problem}")
    mode = "audio (espeak-ng caller, ASR)" if args.audio else "text"
    print(f"\n{summary['passed']} passed, {summary['failed']} failed ({mode} mode)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"results in {args.json}")
    return 0 if summary["failed"] == 0 else 1


def cmd_transcribe(config: Config, args: argparse.Namespace) -> int:
    from asr.batch import ERRORS, LEDGER, BatchOptions, run_batch
    from asr.formats import parse_formats

    chosen = ",".join(args.format or ["jsonl,srt,vtt,txt"])
    try:
        formats = parse_formats(chosen)
    except ValueError as exc:
        raise VoicedeskError(f"--format {chosen}: {exc}") from None
    if args.workers is not None and args.workers < 1:
        raise VoicedeskError(f"--workers {args.workers}: give 1 or more worker processes")
    out = Path(args.out)
    options = BatchOptions(out_dir=out, formats=formats, workers=args.workers or 0,
                           ray_address=args.ray, intents=args.intents)
    summary = run_batch(args.paths, config, options, say=_progress)
    views = [f".{f}" for f in formats if f != "jsonl"]
    print(f"transcripts in {out / LEDGER}" + (f" and one {'/'.join(views)} per file in {out}"
                                               if views else ""))
    print(f"summary: {summary.line(out / ERRORS)}")
    return 0 if summary.ok else 1


def cmd_asr_eval(config: Config, args: argparse.Namespace) -> int:
    import json

    from asr.batch import asr_id, transcribe_recording
    from asr.evaluation import evaluate, read_manifest
    from asr.transcriber import create_transcriber
    from voicedesk.models.prepare import ModelStore

    manifest = Path(args.manifest)
    rows = read_manifest(manifest)  # a malformed manifest fails before any model loads
    _progress(f"loading {asr_id(config)} to score {len(rows)} file(s) from {manifest}")
    transcriber = create_transcriber(config.asr, ModelStore(config.models_dir))

    def transcribe(path: Path) -> tuple[str, float]:
        transcript = transcribe_recording(path, transcriber, config.vad,
                                          config.asr.language or "en")
        return transcript.text, transcript.duration

    from tqdm import tqdm

    with tqdm(total=len(rows), unit="file", file=sys.stderr, desc="scoring",
              dynamic_ncols=True) as bar:
        report = evaluate(rows, transcribe, manifest=str(manifest), asr=asr_id(config),
                          on_file=lambda _: bar.update(1))
    result = report.to_json()
    print(report.table())
    print(f"\nWER {result['wer']:.2f} % over {result['reference_words']} words "
          f"(Whisper English normaliser, * and # spoken), real-time factor {result['rtf']:.3f}, "
          f"{result['failed']} file(s) failed")
    if args.json:
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        if args.json == "-":
            print(text, end="")
        else:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(text, encoding="utf-8")
            _progress(f"scores written to {args.json}")
    return 1 if result["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicedesk", description=__doc__)
    parser.add_argument("--config", type=Path, help="voicedesk.toml to read (default: "
                        "$VOICEDESK_CONFIG, then ./voicedesk.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    call = sub.add_parser("call", help="answer a recorded caller and write the conversation")
    call.add_argument("audio", help="the caller's recording (WAV, FLAC, OGG, MP3)")
    call.add_argument("--out", help="output folder (default: a new folder here)")
    call.add_argument("--channel", type=int, help="use this channel of a multi-channel file")
    call.set_defaults(func=cmd_call)

    demo = sub.add_parser("demo", help="play an example call through `voicedesk call`")
    demo.add_argument("--example", default="outage_report", help="example name in examples/")
    demo.add_argument("--out", help="output folder (default: a new folder here)")
    demo.set_defaults(func=cmd_demo)

    transcribe = sub.add_parser(
        "transcribe", help="transcribe recorded calls in bulk (resumable)",
        description="Transcribe recordings: files, folders (recursive, every file tried) and "
                    "globs. A stereo recording is one call: channel 0 (left) is labelled "
                    "'caller', channel 1 (right) 'agent'; a mono file is all 'caller'. Writes "
                    "transcripts.jsonl (one record per file; also the resume ledger: a rerun "
                    "skips files already in it with the same size and time), one .srt/.vtt/"
                    ".txt per file, and errors.jsonl for files that could not be read. Exit "
                    "status 1 if any file failed.")
    transcribe.add_argument("paths", nargs="+", metavar="PATH",
                            help="audio files (WAV, FLAC, OGG, MP3, raw G.711 .ul/.al), folders "
                                 "or globs such as 'calls/**/*.wav'")
    transcribe.add_argument("--out", default="transcripts",
                            help="output folder (default: ./transcripts)")
    transcribe.add_argument("--format", action="append",
                            help="outputs, comma-separated (or repeated), from jsonl,srt,vtt,"
                                 "txt (default: all; transcripts.jsonl is always kept, for "
                                 "resuming)")
    transcribe.add_argument("--workers", type=int,
                            help="worker processes (Ray actors with --ray), each loading the "
                                 "model once (default: one per core, at most 8; threads per "
                                 "worker = cores / workers)")
    transcribe.add_argument("--ray", metavar="ADDRESS",
                            help="run on a Ray cluster through Ray Data: 'local' starts one "
                                 "here, or an address such as ray://head:10001 (nodes need "
                                 "voicedesk installed and the files at the same paths)")
    transcribe.add_argument("--intents", action="store_true",
                            help="also recognise the intent of each caller segment")
    transcribe.set_defaults(func=cmd_transcribe)

    asr = sub.add_parser("asr", help="speech recognition tools")
    asr_sub = asr.add_subparsers(dest="action", required=True)
    asr_eval = asr_sub.add_parser(
        "eval", help="word error rate and real-time factor on a manifest",
        description="Score the configured ASR on MANIFEST.tsv: lines of 'audio path<TAB>"
                    "reference text' (paths relative to the manifest's folder; an optional "
                    "header line such as 'file<TAB>text'). WER is computed after Whisper's "
                    "English normaliser, as in the Whisper paper.")
    asr_eval.add_argument("manifest", metavar="MANIFEST.tsv")
    asr_eval.add_argument("--json", metavar="PATH",
                          help="also write the scores as JSON ('-' for standard output)")
    asr_eval.set_defaults(func=cmd_asr_eval)

    simulate = sub.add_parser("simulate", help="run scripted calls and check expectations")
    simulate.add_argument("file", help="scenario YAML (customers, outages, calls)")
    simulate.add_argument("--audio", action="store_true",
                          help="speak each caller line with another voice and hear it via ASR")
    simulate.add_argument("--json", help="write the results as JSON here")
    simulate.set_defaults(func=cmd_simulate)

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="action", required=True)
    config_sub.add_parser("show", help="print the effective configuration").set_defaults(
        func=cmd_config_show)

    models = sub.add_parser("models", help="bundled models and their serving formats")
    models_sub = models.add_subparsers(dest="action", required=True)
    models_sub.add_parser("list", help="check every bundled model").set_defaults(
        func=cmd_models_list)
    models_sub.add_parser("prepare", help="prepare the configured models now").set_defaults(
        func=cmd_models_prepare)
    train_cli.register(sub, models_sub)
    register_data(sub)
    register_serve(sub)
    register_talk(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        return int(args.func(config, args))
    except VoicedeskError as exc:
        print(f"voicedesk: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("voicedesk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
