"""The ``voicedesk`` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

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
              f"{'end':>5} {'asr':>5} {'nlu':>5} {'llm':>5} {'tts':>5} {'v2v':>6}")
    print(header)
    print("-" * len(header))
    for turn in result.turns:
        lat = turn.latency_ms
        print(f"{turn.index + 1:>2}  {_cut(turn.transcript.text, 38):<38} "
              f"{_cut(f'{turn.understanding.intent} {turn.understanding.confidence:.2f}', 22):<22} "
              f"{_cut(turn.reply.text, 44):<44} {lat['endpoint_ms']:>5.0f} {lat['asr_ms']:>5.0f} "
              f"{lat['nlu_ms']:>5.0f} {lat['llm_first_sentence_ms']:>5.0f} "
              f"{lat['tts_first_audio_ms']:>5.0f} {lat['voice_to_voice_ms']:>6.0f}")
    print("latencies in ms: end = endpointing wait, llm = first sentence, tts = first audio, "
          "v2v = end of speech to first reply audio")


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
    return 0


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
