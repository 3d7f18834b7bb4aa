"""A transcribed call recording, and the files analysts read it in: JSONL, SRT, WebVTT, text.

One ``CallTranscript`` per recording holds every segment in time order with
who spoke it (the caller or the agent, by channel), so a stereo call reads as
a conversation. The JSONL record is the complete form; the subtitle and text
files are views of it, and can be rendered again from the record alone (a
resumed batch does that instead of transcribing again).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

FORMATS = ("jsonl", "srt", "vtt", "txt")


@dataclass(frozen=True)
class SpokenWord:
    start: float
    end: float
    word: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "word": self.word,
                "probability": round(self.probability, 4)}


@dataclass(frozen=True)
class SpeakerSegment:
    """A stretch of one party's speech; times in seconds from the start of the recording."""

    start: float
    end: float
    text: str
    speaker: str
    channel: int = 0
    words: tuple[SpokenWord, ...] = ()
    intent: str | None = None
    intent_confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": round(self.start, 3), "end": round(self.end, 3), "speaker": self.speaker,
            "channel": self.channel, "text": self.text,
            "words": [w.to_dict() for w in self.words],
        }
        if self.intent is not None:
            out["intent"] = self.intent
            out["intent_confidence"] = round(self.intent_confidence or 0.0, 4)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeakerSegment:
        words = tuple(SpokenWord(w["start"], w["end"], w["word"], w["probability"])
                      for w in data.get("words", ()))
        return cls(data["start"], data["end"], data["text"], data["speaker"],
                   data.get("channel", 0), words, data.get("intent"),
                   data.get("intent_confidence"))


@dataclass(frozen=True)
class CallTranscript:
    """Everything said in one recording, in time order, with who said it."""

    path: str
    duration: float
    speakers: tuple[str, ...]
    segments: tuple[SpeakerSegment, ...] = ()
    language: str = "en"
    sample_rate: int = 0
    channels: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: size, mtime, model, times

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def labelled(self) -> bool:
        """Whether views name the speaker: only when more than one party can be heard."""
        return len(self.speakers) > 1

    def with_extra(self, **values: Any) -> CallTranscript:
        return replace(self, extra={**self.extra, **values})

    def to_record(self) -> dict[str, Any]:
        return {
            "path": self.path,
            **{k: v for k, v in self.extra.items() if k not in ("outputs",)},
            "duration": round(self.duration, 3),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "speakers": list(self.speakers),
            "language": self.language,
            "text": self.text,
            "segments": [s.to_dict() for s in self.segments],
            **({"outputs": self.extra["outputs"]} if "outputs" in self.extra else {}),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CallTranscript:
        known = {"path", "duration", "sample_rate", "channels", "speakers", "language", "text",
                 "segments"}
        return cls(
            path=record["path"], duration=record["duration"],
            speakers=tuple(record["speakers"]),
            segments=tuple(SpeakerSegment.from_dict(s) for s in record["segments"]),
            language=record.get("language", "en"), sample_rate=record.get("sample_rate", 0),
            channels=record.get("channels", 1),
            extra={k: v for k, v in record.items() if k not in known},
        )


def timestamp(seconds: float, separator: str = ".") -> str:
    """HH:MM:SS.mmm (WebVTT) or HH:MM:SS,mmm (SRT, ``separator=","``)."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(transcript: CallTranscript) -> list[SpeakerSegment]:
    """Segments worth a cue: with text, and never ending before they start."""
    return [replace(s, end=max(s.end, s.start + 0.001)) for s in transcript.segments if s.text]


def _one_line(text: str) -> str:
    # A blank line ends a cue in both formats, and "-->" would read as a timing line.
    return " ".join(text.split()).replace("-->", "->")


def to_srt(transcript: CallTranscript) -> str:
    """SubRip: numbered cues, comma before the milliseconds; speaker as ``[caller]``."""
    blocks = []
    for index, seg in enumerate(_cues(transcript), 1):
        label = f"[{seg.speaker}] " if transcript.labelled else ""
        blocks.append(f"{index}\n{timestamp(seg.start, ',')} --> {timestamp(seg.end, ',')}\n"
                      f"{label}{_one_line(seg.text)}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: CallTranscript) -> str:
    """WebVTT, with the speaker as a voice span (``<v caller>``) that players show."""
    blocks = ["WEBVTT\n"]
    for seg in _cues(transcript):
        text = _vtt_escape(_one_line(seg.text))
        if transcript.labelled:
            text = f"<v {seg.speaker}>{text}</v>"
        blocks.append(f"{timestamp(seg.start)} --> {timestamp(seg.end)}\n{text}\n")
    return "\n".join(blocks)


def to_txt(transcript: CallTranscript) -> str:
    """Plain text, one segment a line, ``caller: ...`` when there are two parties."""
    lines = [f"{seg.speaker}: {_one_line(seg.text)}" if transcript.labelled
             else _one_line(seg.text) for seg in _cues(transcript)]
    return "\n".join(lines) + ("\n" if lines else "")


RENDERERS = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt}


def parse_formats(text: str) -> tuple[str, ...]:
    """``"jsonl,srt"`` -> ``("jsonl", "srt")``, or a ValueError naming the unknown one."""
    chosen = [f.strip().lower().lstrip(".") for f in text.replace(" ", ",").split(",")]
    chosen = [f for f in chosen if f]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise ValueError(f"unknown output format(s) {', '.join(unknown) or repr(text)}; "
                         f"choose from {','.join(FORMATS)}")
    return tuple(dict.fromkeys(chosen))
