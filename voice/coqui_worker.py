"""The Coqui TTS worker: runs inside Coqui's own Python environment, never in voicedesk's.

Coqui TTS needs torchaudio, which has no release for the torch voicedesk installs, so
it lives in a separate virtual environment and ``voice/coqui_tts.py`` starts this
script there (``<coqui python> coqui_worker.py --model NAME``). It imports only the
standard library, numpy and TTS, and speaks JSON lines:

    worker -> {"ready": true, "protocol": 1, "sample_rate": 22050, "model": "..."}
    client -> {"id": 1, "text": "Hello."}
    worker -> {"id": 1, "sample_rate": 22050, "pcm": "<base64 float32 little-endian mono>"}
           or {"id": 1, "error": "what went wrong"}

A worker that cannot start prints ``{"error": ...}`` instead of the ready line and
exits with status 2. Everything Coqui itself prints goes to stderr, so stdout
carries only the protocol.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

PROTOCOL = 1


def _protocol_stdout() -> TextIO:
    """Keep the real stdout for the protocol; send every other print (Coqui's) to stderr."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return out


def _send(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _load(model: str, device: str) -> Any:
    """A Coqui ``TTS`` object for a model name (``tts_models/en/ljspeech/vits``) or folder."""
    from TTS.api import TTS

    folder = Path(model)
    if folder.is_dir():
        tts = TTS(model_path=str(_checkpoint(folder)), config_path=str(folder / "config.json"))
    else:
        tts = TTS(model)
    return tts.to(device)


def _checkpoint(folder: Path) -> Path:
    """The model checkpoint in a trained model's folder (beside its config.json)."""
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json")
    for name in ("model.pth", "model_file.pth", "best_model.pth", "checkpoint.pth"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p.name for p in folder.glob("*.pth"))
    if len(found) == 1:
        return folder / found[0]
    raise FileNotFoundError(f"{folder}: expected one model checkpoint (model.pth or "
                            f"best_model.pth); found {found or 'none'}")


def _sample_rate(tts: Any) -> int:
    synthesizer = tts.synthesizer
    return int(getattr(synthesizer, "output_sample_rate", 0)
               or synthesizer.tts_config.audio["sample_rate"])


def serve(args: argparse.Namespace, out: TextIO, requests: TextIO) -> int:
    try:
        import numpy as np

        tts = _load(args.model, args.device)
    except ImportError as exc:
        _send(out, {"error": f"Coqui TTS is not installed in {sys.executable} ({exc}): "
                             f"pip install coqui-tts into that environment"})
        return 2
    except Exception as exc:  # Coqui raises many kinds for a bad model name or file
        _send(out, {"error": f"Coqui model {args.model!r} could not be loaded: "
                             f"{type(exc).__name__}: {exc}"})
        return 2
    model = getattr(tts.synthesizer, "tts_model", None)
    if args.length_scale != 1.0 and hasattr(model, "length_scale"):
        model.length_scale = args.length_scale  # VITS-family models: speaking rate
    rate = _sample_rate(tts)
    _send(out, {"ready": True, "protocol": PROTOCOL, "sample_rate": rate, "model": args.model})
    options: dict[str, Any] = {}
    if args.speaker:
        options["speaker"] = args.speaker
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            rid, text = request["id"], str(request["text"])
        except (ValueError, KeyError, TypeError) as exc:
            _send(out, {"id": None, "error": f"bad request {line[:80]!r}: {exc}"})
            continue
        try:
            audio = np.asarray(tts.tts(text=text, **options), dtype="<f4").reshape(-1)
        except Exception as exc:
            _send(out, {"id": rid, "error": f"{type(exc).__name__}: {exc}"})
            continue
        _send(out, {"id": rid, "sample_rate": rate,
                    "pcm": base64.b64encode(audio.tobytes()).decode("ascii")})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Coqui model name or model folder")
    parser.add_argument("--speaker", default="", help="speaker of a multi-speaker model")
    parser.add_argument("--length-scale", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    out = _protocol_stdout()
    return serve(args, out, sys.stdin)


if __name__ == "__main__":
    sys.exit(main())
