"""The call as people hear it: a stereo WAV and a transcript, laid out in time order.

A recorded caller never waits for the assistant, so the caller's audio is cut
at each turn's end and the next part is pushed later whenever the reply
(starting one voice-to-voice latency after the caller stopped) would still be
playing. Left channel: caller; right channel: assistant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from asr.audio import to_int16

PAUSE_AFTER_REPLY_S = 0.4


@dataclass(frozen=True)
class Placed:
    """A stretch of audio and where it starts in the conversation, in seconds."""

    start: float
    samples: np.ndarray


@dataclass(frozen=True)
class Timeline:
    caller: list[Placed]
    assistant: list[Placed]
    turn_offsets: list[float]  # shift added to each caller turn's recording times
    reply_starts: list[float]


def lay_out(caller: np.ndarray, rate: int, turn_ends: list[float], turn_starts: list[float],
            replies: list[np.ndarray], reply_delays: list[float],
            greeting: np.ndarray | None = None) -> Timeline:
    """Place caller pieces and replies so nobody talks over anybody."""
    caller_parts: list[Placed] = []
    assistant: list[Placed] = []
    offsets: list[float] = []
    reply_starts: list[float] = []
    shift = 0.0
    if greeting is not None and len(greeting):
        assistant.append(Placed(0.0, greeting))
        first = turn_starts[0] if turn_starts else 0.0
        shift = max(0.0, len(greeting) / rate + PAUSE_AFTER_REPLY_S - first)
    cut = 0.0
    for i, end in enumerate(turn_ends):
        piece = caller[int(round(cut * rate)):int(round(end * rate))]
        caller_parts.append(Placed(cut + shift, piece))
        offsets.append(shift)
        reply_start = end + shift + reply_delays[i]
        reply_starts.append(reply_start)
        assistant.append(Placed(reply_start, replies[i]))
        reply_end = reply_start + len(replies[i]) / rate
        if i + 1 < len(turn_ends):
            next_speech = turn_starts[i + 1] + shift
            if next_speech < reply_end + PAUSE_AFTER_REPLY_S:
                shift += reply_end + PAUSE_AFTER_REPLY_S - next_speech
        cut = end
    caller_parts.append(Placed(cut + shift, caller[int(round(cut * rate)):]))
    return Timeline(caller_parts, assistant, offsets, reply_starts)


def render_stereo(timeline: Timeline, rate: int) -> np.ndarray:
    def end_of(parts: list[Placed]) -> int:
        return max((int(round(p.start * rate)) + len(p.samples) for p in parts), default=0)

    length = max(end_of(timeline.caller), end_of(timeline.assistant))
    out = np.zeros((length, 2), dtype=np.float32)
    for channel, parts in ((0, timeline.caller), (1, timeline.assistant)):
        for part in parts:
            a = int(round(part.start * rate))
            out[a:a + len(part.samples), channel] += part.samples
    return out


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    sf.write(str(path), to_int16(samples), rate, subtype="PCM_16")


def write_transcripts(folder: Path, record: dict[str, Any]) -> None:
    (folder / "transcript.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    lines = [f"Call {record['call_id']}  ({record['source']})", ""]
    if record.get("greeting"):
        g = record["greeting"]
        lines.append(f"[{_clock(g['start'])}] Assistant: {g['text']}")
    for turn in record["turns"]:
        caller, reply = turn["caller"], turn["assistant"]
        lines.append(f"[{_clock(caller['start'])}] Caller: {caller['text']}")
        lines.append(f"[{_clock(reply['start'])}] Assistant ({turn['intent']}, "
                     f"{turn['intent_confidence']:.2f}): {reply['text']}")
    (folder / "transcript.txt").write_text("\n".join(lines) + "\n")


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"
