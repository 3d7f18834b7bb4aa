#!/usr/bin/env python3
"""Synthesise the example CALLER recordings in ``examples/`` from ``examples/calls/*.yaml``.

Why this exists
---------------
voicedesk needs realistic multi-turn caller audio to demo and test the whole
loop (VAD -> ASR -> dialogue -> TTS) without recording real customers, whose
voices would be personal data.  Each recording is one side of a call: the
caller's turns, each followed by a 3 s gap where the assistant would answer.

The caller is synthesised with Debian's ``espeak-ng`` using a female US
variant, so it is clearly different from the assistant's male Piper voice
(en_US-joe-medium), and nothing needs to be downloaded at run time.  The
output is reproducible: espeak-ng, soxr and the FLAC encoder are
deterministic and no randomness is used, so the same scripts and the same
package versions give byte-identical files.

Layout of ``examples/<id>.flac`` (16 kHz, mono, 16-bit FLAC)::

    0.5 s digital silence | turn 1 | 3.0 s digital silence | turn 2 | 3.0 s ... | turn N | 3.0 s

``examples/<id>.txt`` holds the reference text, one caller turn per line.

Usage::

    python examples/make_examples.py            # (re)generate all calls
    python examples/make_examples.py --only outage_report

Requires the Debian package ``espeak-ng`` (``apt-get install espeak-ng``) and,
from PyPI, numpy, soundfile, soxr and PyYAML.  An ``mb-*`` voice additionally
needs ``mbrola`` and the matching ``mbrola-<voice>`` package (contrib/non-free).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import yaml

SAMPLE_RATE = 16_000
LEAD_SILENCE_S = 0.5
GAP_AFTER_TURN_S = 3.0
PEAK_DBFS = -3.0
# Trailing/leading synthesiser output quieter than this is treated as silence
# and replaced by exact zeros, so the gaps are clean digital silence.
TRIM_THRESHOLD = 10 ** (-54 / 20)
KEEP_MARGIN_S = 0.03  # keep a little audio either side of the first/last loud sample
FADE_S = 0.01

EXAMPLES_DIR = Path(__file__).resolve().parent
DEFAULT_CALLS_DIR = EXAMPLES_DIR / "calls"


class SetupError(RuntimeError):
    """A missing system dependency; the message says what to install."""


@dataclass(frozen=True)
class Voice:
    """espeak-ng voice settings for one call."""

    name: str  # espeak-ng -v, e.g. "en-us+f5" or "mb-us1"
    rate_wpm: int = 145  # espeak-ng -s
    word_gap: int = 5  # espeak-ng -g, in units of 10 ms
    pitch: int = 50  # espeak-ng -p, 0..99


@dataclass(frozen=True)
class Call:
    id: str
    title: str
    voice: Voice
    turns: tuple[str, ...]


def load_call(path: Path) -> Call:
    """Read one call script; see examples/calls/*.yaml for the schema."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    try:
        voice_data = data["voice"]
        if isinstance(voice_data, str):
            voice = Voice(name=voice_data)
        else:
            voice = Voice(
                name=str(voice_data["name"]),
                rate_wpm=int(voice_data.get("rate_wpm", Voice.rate_wpm)),
                word_gap=int(voice_data.get("word_gap", Voice.word_gap)),
                pitch=int(voice_data.get("pitch", Voice.pitch)),
            )
        turns = tuple(str(t).strip() for t in data["turns"])
        call = Call(id=str(data["id"]), title=str(data["title"]), voice=voice, turns=turns)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: missing or malformed field: {exc}") from exc
    if not call.turns or any(not t or "\n" in t for t in call.turns):
        raise ValueError(f"{path}: every turn must be a non-empty single line")
    return call


def check_voice_installed(voice: Voice) -> None:
    """Fail early, with the Debian package to install, if synthesis cannot work."""
    if shutil.which("espeak-ng") is None:
        raise SetupError(
            "espeak-ng not found: install the Debian package 'espeak-ng' "
            "(apt-get install espeak-ng)"
        )
    base, _, variant = voice.name.partition("+")
    if variant:
        # espeak-ng silently falls back to its default (male) variant for an unknown one.
        listing = subprocess.run(
            ["espeak-ng", "--voices=variant"], capture_output=True, text=True
        ).stdout
        known = {f.split("/", 1)[1] for f in listing.split() if f.startswith("!v/")}
        if variant not in known:
            raise SetupError(
                f"espeak-ng has no voice variant {variant!r} (see 'espeak-ng --voices=variant');"
                " the Debian package 'espeak-ng-data' provides the standard ones"
            )
    if base.startswith("mb-"):
        db = base[3:]  # "mb-us1" -> "us1"
        if shutil.which("mbrola") is None:
            raise SetupError(
                f"voice {voice.name!r} needs MBROLA: install the Debian packages 'mbrola' "
                f"and 'mbrola-{db}' (contrib/non-free)"
            )
        if not Path("/usr/share/mbrola", db).exists():
            raise SetupError(
                f"MBROLA voice database {db!r} not found: install the Debian package "
                f"'mbrola-{db}' (non-free)"
            )


def synthesise(text: str, voice: Voice) -> np.ndarray:
    """Speak ``text`` with espeak-ng and return float32 mono audio at 16 kHz."""
    with tempfile.TemporaryDirectory(prefix="voicedesk-tts-") as tmp:
        wav = Path(tmp) / "turn.wav"
        cmd = [
            "espeak-ng",
            "-v",
            voice.name,
            "-s",
            str(voice.rate_wpm),
            "-g",
            str(voice.word_gap),
            "-p",
            str(voice.pitch),
            "-w",
            str(wav),
            "--",
            text,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wav.exists() or wav.stat().st_size <= 44:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise SetupError(
                f"espeak-ng could not speak with voice {voice.name!r}"
                f" ({detail[0] if detail else f'exit {proc.returncode}'}); "
                "check 'espeak-ng --voices=en'"
            )
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return audio


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """Cut the synthesiser's quiet lead-in/tail and fade the edges to avoid clicks."""
    loud = np.flatnonzero(np.abs(audio) > TRIM_THRESHOLD)
    if loud.size == 0:
        raise ValueError("synthesised turn is silent")
    margin = int(KEEP_MARGIN_S * SAMPLE_RATE)
    start = max(int(loud[0]) - margin, 0)
    end = min(int(loud[-1]) + 1 + margin, audio.size)
    out = audio[start:end].copy()
    fade = min(int(FADE_S * SAMPLE_RATE), out.size // 2)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def render_call(call: Call) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Assemble the whole recording: int16 samples and each turn's (start, end) in seconds."""
    turns = [trim_silence(synthesise(text, call.voice)) for text in call.turns]
    peak = max(float(np.abs(t).max()) for t in turns)
    gain = (10 ** (PEAK_DBFS / 20)) / peak  # one gain per call: turns keep their relative level
    lead = np.zeros(int(LEAD_SILENCE_S * SAMPLE_RATE), dtype=np.int16)
    gap = np.zeros(int(GAP_AFTER_TURN_S * SAMPLE_RATE), dtype=np.int16)
    parts: list[np.ndarray] = [lead]
    spans: list[tuple[float, float]] = []
    pos = lead.size
    for turn in turns:
        pcm = to_pcm16(turn * gain)
        spans.append((pos / SAMPLE_RATE, (pos + pcm.size) / SAMPLE_RATE))
        parts.extend([pcm, gap])
        pos += pcm.size + gap.size
    return np.concatenate(parts), spans


def write_call(call: Call, out_dir: Path) -> Path:
    samples, spans = render_call(call)
    flac = out_dir / f"{call.id}.flac"
    sf.write(flac, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    (out_dir / f"{call.id}.txt").write_text("".join(t + "\n" for t in call.turns), encoding="utf-8")
    turn_info = ", ".join(f"{e - s:.1f}s" for s, e in spans)
    print(
        f"{flac.name}: {samples.size / SAMPLE_RATE:.1f} s, {flac.stat().st_size / 1024:.0f} KiB,"
        f" voice {call.voice.name} @ {call.voice.rate_wpm} wpm, turns {turn_info}"
    )
    return flac


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--calls-dir", type=Path, default=DEFAULT_CALLS_DIR, help="directory of call YAML scripts"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=EXAMPLES_DIR, help="where to write <id>.flac and <id>.txt"
    )
    parser.add_argument(
        "--only", action="append", metavar="ID", help="generate only this call id (repeatable)"
    )
    args = parser.parse_args(argv)

    paths = sorted(args.calls_dir.glob("*.yaml"))
    if not paths:
        print(f"error: no call scripts (*.yaml) in {args.calls_dir}", file=sys.stderr)
        return 2
    try:
        calls = [load_call(p) for p in paths]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.only:
        unknown = set(args.only) - {c.id for c in calls}
        if unknown:
            print(f"error: unknown call id(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        calls = [c for c in calls if c.id in args.only]

    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for voice in sorted({c.voice for c in calls}, key=lambda v: v.name):
            check_voice_installed(voice)
        for call in calls:
            write_call(call, args.out_dir)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
