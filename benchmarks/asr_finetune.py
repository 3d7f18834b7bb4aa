"""Whisper fine-tuning on a small in-domain set: in-domain WER before and after, and the
general dev set to show nothing broke.

    .venv/bin/python benchmarks/asr_finetune.py [--epochs 3] [--json PATH]

There is no recorded telecom call audio in the repository, so the in-domain
set is synthesised: caller lines from the telecom pack (intent examples,
scenario turns, knowledge-base sentences with plan names and prices) spoken
by espeak-ng in two voices, split by a hash of the text into train and
held-out test (no sentence in both). It is a stand-in for reviewed call
audio with the same vocabulary; the figures say what fine-tuning does to
that vocabulary and voice, not to real callers. The general set is every
clip in ../shared/data/asr/dev. Both models are served by faster-whisper
(CTranslate2 int8) and scored with the Whisper English normaliser.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import cpu_model, version, write_results  # noqa: E402

from training.asr_finetune import PARTS, AsrFinetuneOptions, finetune_whisper  # noqa: E402
from training.loop import LoopOptions  # noqa: E402
from training.task_examples import AudioExample, audio_examples  # noqa: E402
from training.verify import VerifyOptions, evaluate_asr  # noqa: E402
from voicedesk.config import load_config  # noqa: E402
from voicedesk.models.prepare import ModelStore  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "data" / "asr" / "dev"
RESULTS = Path(__file__).parent / "results" / "asr_finetune.json"
VOICES = ("en-us+f5", "en-us+m3")


def telecom_lines() -> list[str]:
    import yaml

    pack = REPO / "nlu" / "domain" / "telecom"
    lines = [e for i in yaml.safe_load((pack / "intents.yaml").read_text())["intents"].values()
             for e in i["examples"]]
    for call in yaml.safe_load((pack / "scenarios.yaml").read_text())["calls"]:
        lines += [str(t["say"]) for t in call["turns"] if "say" in t]
    for md in sorted((pack / "knowledge").glob("*.md")):
        for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"[*#]|^- ", "", md.read_text(),
                                                          flags=re.M)):
            sentence = " ".join(sentence.split())
            if 4 <= len(sentence.split()) <= 25:
                lines.append(sentence)
    return sorted(set(lines))


def build_dataset(folder: Path) -> None:
    """manifest.json and asr/{train,test}.jsonl of espeak-ng FLACs (the dataset format)."""
    import soundfile as sf

    from asr.audio import resample
    from voice.espeak_tts import EspeakSynthesizer

    if (folder / "manifest.json").is_file():
        return
    (folder / "asr" / "audio").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {"train": [], "test": []}
    for n, text in enumerate(telecom_lines()):
        bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 4
        split = "test" if bucket == 0 else "train"
        voice = EspeakSynthesizer(voice=VOICES[n % 2], rate_wpm=160)
        audio = __import__("numpy").concatenate(list(voice.synthesize(text)))
        audio = resample(audio, voice.sample_rate, 16_000)
        name = f"asr/audio/{n:04d}.flac"
        sf.write(folder / name, audio, 16_000)
        rows[split].append({"id": f"{n:04d}", "call_id": None, "audio": name, "text": text})
    for split, items in rows.items():
        (folder / "asr" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in items))
    (folder / "asr" / "validation.jsonl").write_text("")
    (folder / "manifest.json").write_text(json.dumps(
        {"name": "telecom-espeak", "synthetic": True, "voices": VOICES}) + "\n")


def dev_clips() -> list[AudioExample]:
    out = []
    for tsv in sorted(DEV.glob("*/transcripts.tsv")):
        for line in tsv.read_text().splitlines():
            name, _, text = line.partition("\t")
            if (tsv.parent / name).is_file():
                out.append(AudioExample(tsv.parent / name, text.strip(), name))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--train", choices=PARTS, default=AsrFinetuneOptions().train,
                        help="what learns: encoder, decoder or all")
    parser.add_argument("--out", type=Path, default=Path("/tmp/voicedesk-bench-asr"))
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    config = load_config()
    data = args.out / "dataset"
    build_dataset(data)
    train, test = audio_examples(data, "train"), audio_examples(data, "test")
    general = dev_clips()
    print(f"in-domain clips: {len(train)} train, {len(test)} held out; general: {len(general)}")
    options = VerifyOptions(clips=test, general_clips=general)
    before = evaluate_asr(config.asr.model, config, options, say=print)

    import shutil

    shutil.rmtree(args.out / "run", ignore_errors=True)  # a benchmark starts afresh
    started = time.perf_counter()
    run = finetune_whisper(ModelStore(config.models_dir).whisper_hf(config.asr.model), train,
                           args.out / "run", AsrFinetuneOptions(
                               train=args.train,
                               loop=LoopOptions(epochs=args.epochs, batch_size=8,
                                                learning_rate=args.lr, save_every=1000)))
    train_s = time.perf_counter() - started
    assert run.model is not None
    after = evaluate_asr(str(run.model.serving_path("ct2")), config, options, say=print)

    relative = (before["wer"] - after["wer"]) / before["wer"] if before["wer"] else 0.0
    print(f"\n{'set':<22} {'WER before':>10} {'WER after':>10}")
    print(f"{'in-domain (held out)':<22} {before['wer']:>10.2f} {after['wer']:>10.2f}")
    print(f"{'general (asr/dev)':<22} {before['wer_general']:>10.2f} "
          f"{after['wer_general']:>10.2f}")
    print(f"in-domain WER {100 * relative:.1f} % lower (relative); general WER "
          f"{after['wer_general'] - before['wer_general']:+.2f} points; trained "
          f"{run.loop.steps} steps in {train_s:.0f} s")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(),
              "torch": version("torch"), "transformers": version("transformers"),
              "model": config.asr.model, "synthetic_in_domain": True,
              "train_clips": len(train), "test_clips": len(test), "general_clips": len(general),
              "epochs": args.epochs, "lr": args.lr, "train": args.train,
              "steps": run.loop.steps,
              "train_seconds": train_s, "before": before,
              "after": after, "in_domain_relative_reduction": relative,
              "general_change_points": after["wer_general"] - before["wer_general"]}
    write_results(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
