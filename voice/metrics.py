"""Per-turn latency, watched from the side of the pipeline, and exported to Prometheus.

Each stage's time is the gap between two frames on the line clock:

    speech end --endpoint--> TurnEnded --asr_final--> final Transcript
    --first_sentence--> first ReplyText --tts_first_audio--> first ReplyAudio
    --> its first sample on the line (after what is already queued ahead of it)

``voice_to_voice_ms`` runs from the end of the caller's speech to that first
sample: the caller's own experience of the wait. The values are written into
the turn's log (and so into the call store) and observed by Prometheus
histograms that `voicedesk serve --metrics` exposes.
"""

from __future__ import annotations

from typing import Any

from voice.context import CallContext
from voice.frames import Frame, ReplyAudio, ReplyText, Transcript

STAGES = ("endpoint_ms", "asr_final_ms", "llm_first_token_ms", "first_sentence_ms",
          "tts_first_audio_ms", "voice_to_voice_ms")

_metrics: dict[str, Any] | None = None


def prometheus() -> dict[str, Any]:
    """The process's metrics, created once (prometheus_client's default registry)."""
    global _metrics
    if _metrics is None:
        from prometheus_client import Counter, Gauge, Histogram

        buckets = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
        _metrics = {
            "stage": Histogram("voicedesk_turn_stage_seconds",
                               "Time spent in each stage of a turn", ["stage"], buckets=buckets),
            "calls": Counter("voicedesk_calls_total", "Calls handled", ["channel", "outcome"]),
            "active": Gauge("voicedesk_active_calls", "Calls in progress"),
            "turns": Counter("voicedesk_turns_total", "Caller turns answered"),
            "barge_ins": Counter("voicedesk_barge_ins_total", "Replies the caller talked over",
                                 ["kind"]),
            "early": Counter("voicedesk_early_starts_total",
                             "Replies prepared before the endpoint", ["kept"]),
        }
    return _metrics


def start_metrics_server(host: str, port: int) -> None:
    from prometheus_client import start_http_server

    prometheus()
    start_http_server(port, addr=host)


class LatencyObserver:
    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self._final_t = 0.0
        self._text_t: dict[int, float] = {}

    def on_frame(self, stage: str, frame: Frame, t: float) -> None:
        if isinstance(frame, Transcript) and frame.final:
            self._final_t = t
        elif isinstance(frame, ReplyText) and frame.index == 0:
            self._text_t[frame.turn] = t
            entry = self.ctx.turn(frame.turn)
            if entry is not None and entry.speech_end and self._final_t:
                entry.latency_ms["first_sentence_ms"] = _ms(t - self._final_t)
        elif isinstance(frame, ReplyAudio) and frame.index == 0 and stage == "speech":
            entry = self.ctx.turn(frame.turn)
            if entry is None:
                return
            if frame.turn in self._text_t:
                entry.latency_ms["tts_first_audio_ms"] = _ms(t - self._text_t[frame.turn])
            if entry.speech_end and entry.transcript:
                plays_at = t + self.ctx.transport.pending_s
                entry.latency_ms["voice_to_voice_ms"] = _ms(plays_at - entry.speech_end)
                metrics = prometheus()
                metrics["turns"].inc()
                for name in STAGES:
                    if name in entry.latency_ms:
                        metrics["stage"].labels(name.removesuffix("_ms")).observe(
                            entry.latency_ms[name] / 1000)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
