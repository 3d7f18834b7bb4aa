"""Live calls: one process, shared models, one pipeline per call on any ``Transport``.

``CallService.handle(transport)`` is the entry point every gateway calls for
each answered call: it greets the caller, runs the five stages until either
side hangs up, and stores the call (each turn's audio, transcript, intent,
slots, what the caller heard of the reply, and latencies) in one transaction.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from nlu.crm import CRM
from training.store import CallStore, TurnRecord
from voice.assistant import Assistant
from voice.context import CallContext, TurnLog
from voice.frames import CallerAudio16k, Hangup, KeypadDigits
from voice.hearing import Hearing
from voice.listening import Listening
from voice.metrics import LatencyObserver, prometheus
from voice.pipeline import Pipeline
from voice.pool import InferencePool
from voice.speaking import Playback, Speech
from voice.transport import CallerAudio, KeyPress, LineClosed, Transport
from voice.turns import TurnManager
from voicedesk.config import Config

log = logging.getLogger(__name__)
SPEECH_RATE = 16_000


@dataclass
class CallOutcome:
    call_id: str
    turns: list[TurnLog]
    summary: dict[str, Any]
    ended: str
    barge_ins: int
    false_barge_ins: int
    gaps: int
    stored: bool
    greeting: str = ""
    caller_audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


class _Resampler:
    """Line audio to 16 kHz, continuous across packets (no clicks at frame edges)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._stream = None
        if rate != SPEECH_RATE:
            import soxr

            self._stream = soxr.ResampleStream(rate, SPEECH_RATE, 1, dtype="float32",
                                               quality="HQ")

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples)


class CallService:
    def __init__(self, config: Config, assistant: Assistant | None = None,
                 store: CallStore | None = None, crm: CRM | None = None,
                 pool: InferencePool | None = None) -> None:
        self.config = config
        self.assistant = assistant
        self.store = store
        self.crm = crm
        self.pool = pool
        self.active = 0
        self.handled = 0
        self.generation = 0  # of the promoted models in use (0: the configured ones)
        self._calls: set[CallContext] = set()
        self._watcher: Any = None
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the models once (in a thread: the event loop keeps serving)."""
        if self.assistant is None:
            self.assistant = await asyncio.to_thread(Assistant.load, self.config)
        warmed = await asyncio.to_thread(self.assistant.warm_up)
        if warmed:
            log.info("models warmed up in %.1f s", warmed)
        if self.store is None:
            self.store = CallStore(self.config.database_url, self.config.audio_dir)
        if self.crm is None:
            from nlu.crm.demo import DemoCRM

            demo = DemoCRM(self.store.url)
            demo.seed_if_empty()
            self.crm = demo
        if self.pool is None:
            self.pool = InferencePool()
        prometheus()
        await self._follow_promotions()

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self.pool is not None:
            self.pool.close()

    # ---- promoted models, swapped between turns ------------------------------------
    async def _follow_promotions(self) -> None:
        """Serve the promoted model if there is one, and keep watching the registry."""
        from training.registry import PromotionWatcher

        assert self.store is not None
        self._watcher = PromotionWatcher(self.store.engine, self.config.call.model_check_s)
        current = self._watcher.current
        if current.llm is not None or current.asr is not None:
            await self._swap(current)
        self._watch_task = asyncio.create_task(self._watch(), name="model-watcher")

    async def _watch(self) -> None:
        assert self._watcher is not None
        while True:
            await asyncio.sleep(self.config.call.model_check_s)
            try:
                served = await asyncio.to_thread(self._watcher.poll)
                if served is not None:
                    await self._swap(served)
            except Exception:  # a bad candidate must not take the service down
                log.exception("could not switch to the promoted model; keeping the current one")

    async def _swap(self, served: Any) -> None:
        """Load the promoted models beside the current ones, then switch every call over.

        Calls in progress pick the new models up at their next turn; nothing is dropped.
        """
        config = copy.deepcopy(self.config)
        if served.llm is not None:
            config.llm.model = served.llm_path(config.llm.engine)
        if served.asr is not None:
            config.asr.model = served.asr_path(config.asr.backend)
        started = time.monotonic()
        assistant = await asyncio.to_thread(Assistant.load, config)
        await asyncio.to_thread(assistant.warm_up)  # before any caller meets it
        self.assistant = assistant
        for ctx in self._calls:
            ctx.assistant = assistant
        self.generation = served.generation
        log.info("now serving generation %d (llm %s, asr %s), loaded in %.1f s",
                 served.generation, config.llm.model, config.asr.model,
                 time.monotonic() - started)

    async def handle(self, transport: Transport) -> CallOutcome:
        if self.assistant is None or self.pool is None or self.crm is None:
            await self.start()
        assert self.assistant is not None and self.pool is not None and self.crm is not None
        call_id = str(uuid.uuid4())
        ctx = CallContext(call_id, transport, self.assistant, self.pool, self.config)
        self._calls.add(ctx)
        turns = TurnManager(ctx, self.crm, transport.info.caller_id)
        playback = Playback(ctx)
        pipeline = Pipeline([Listening(ctx), Hearing(ctx), turns, Speech(ctx), playback],
                            ctx.clock, [LatencyObserver(ctx)])
        metrics = prometheus()
        metrics["active"].inc()
        self.active += 1
        started_at = datetime.now(UTC)
        log.info("call %s (%s %s) from %r: answered", call_id, transport.info.channel,
                 transport.info.call_id, transport.info.caller_id)
        pipeline.start()
        greeting = self.assistant.domain.prompts.get("greeting", "")
        heard: list[np.ndarray] = []
        cancelled = False
        try:
            if greeting:
                await turns.greet(greeting)
            await self._listen(ctx, transport, pipeline, heard)
            await asyncio.sleep(0)  # let the stages see the hang-up
            await pipeline.stop()
        except asyncio.CancelledError:
            # The gateway is shutting down: the call is over, but what was said in it is
            # still stored below (a call is never lost), then the cancellation goes on.
            cancelled = True
            pipeline.abort()
            ctx.ended = ctx.ended or "service stopped"
        caller = np.concatenate(heard) if heard else np.zeros(0, dtype=np.float32)
        playback.finish()
        summary = turns.summary()
        summary["ended"] = ctx.ended
        summary["line_call_id"] = transport.info.call_id  # the gateway's own id for the call
        summary["barge_ins"] = ctx.barge_ins
        summary["assistant_prompts"] = [t.heard for t in ctx.turns
                                        if not t.transcript and not t.dtmf]
        self._calls.discard(ctx)
        storing = asyncio.ensure_future(asyncio.to_thread(self._store, ctx, caller, started_at,
                                                          summary))
        stored = await asyncio.shield(storing)
        self.active -= 1
        self.handled += 1
        metrics["active"].dec()
        metrics["calls"].labels(transport.info.channel, summary.get("disposition", "")).inc()
        log.info("call %s: %s after %d turns (%s)", call_id, ctx.ended, len(ctx.turns),
                 summary.get("disposition"))
        if cancelled:
            raise asyncio.CancelledError
        return CallOutcome(call_id, ctx.turns, summary, ctx.ended, ctx.barge_ins,
                           ctx.false_barge_ins, playback.gaps, stored, greeting, caller)

    async def _listen(self, ctx: CallContext, transport: Transport, pipeline: Pipeline,
                      kept: list[np.ndarray]) -> None:
        """Read the line until it closes, keeping the caller's audio (16 kHz) in ``kept``."""
        resampler = _Resampler(transport.info.sample_rate)
        received = 0  # line samples
        while True:
            event = await transport.receive()
            if isinstance(event, CallerAudio):
                t = received / transport.info.sample_rate
                received += len(event.samples)
                ctx.clock.advance(received / transport.info.sample_rate)
                audio = resampler(event.samples)
                if len(audio):
                    kept.append(audio)
                    await pipeline.feed(CallerAudio16k(audio, t, False))
            elif isinstance(event, KeyPress):
                await pipeline.feed(KeypadDigits(event.digit, ctx.clock.now()))
            elif isinstance(event, LineClosed):
                if not ctx.ended:
                    ctx.ended = "caller hung up" if event.reason == "hangup" else event.reason
                await pipeline.feed(Hangup(ctx.clock.now(), ctx.ended), ordered=True)
                break
            if pipeline.failure is not None:
                ctx.ended = ctx.ended or "internal error"
                await transport.close()
                break

    def _store(self, ctx: CallContext, caller: np.ndarray, started_at: datetime,
               summary: dict[str, Any]) -> bool:
        """Store the call; a failure is logged, never raised into the gateway's call task."""
        try:
            return self._write(ctx, caller, started_at, summary)
        except Exception:
            log.exception("call %s could not be stored", ctx.call_id)
            return False

    def _write(self, ctx: CallContext, caller: np.ndarray, started_at: datetime,
               summary: dict[str, Any]) -> bool:
        assert self.store is not None and self.assistant is not None
        store, rate = self.store, ctx.line_rate
        spec = self.assistant.domain.slots
        records = []
        for entry in ctx.turns:
            if not entry.transcript and not entry.dtmf:
                continue  # the assistant's own prompts live in the summary
            reply_audio = (np.concatenate(entry.reply_audio) if entry.reply_audio
                           else np.zeros(0, np.float32))
            latency = dict(entry.latency_ms)
            if entry.interrupted:
                latency["interrupted"] = 1.0
            if entry.early_start:
                latency["early_start"] = 1.0
            records.append(TurnRecord(
                index=len(records),
                caller_start_s=entry.start,
                caller_end_s=entry.speech_end,
                caller_audio_sha256=store.audio.put(entry.caller_audio, SPEECH_RATE),
                transcript=entry.transcript or f"[keypad {len(entry.dtmf)} digits]",
                asr_confidence=entry.confidence,
                words=[{"word": w.text, "start": round(float(w.start), 3),
                        "end": round(float(w.end), 3),
                        "probability": round(float(w.probability), 3)} for w in entry.words],
                intent=entry.intent,
                intent_confidence=entry.intent_confidence,
                slots={k: ("[withheld]" if k in spec and spec[k].sensitive else v)
                       for k, v in entry.slots.items()},
                reply=entry.heard,  # what the caller heard: all of it, unless cut short
                reply_audio_sha256=store.audio.put(reply_audio, rate) if len(reply_audio)
                else None,
                latency_ms=latency,
                redactions=entry.redactions,
            ))
        if ctx.redacted:
            from training.data.silence import silence

            caller = silence(caller, SPEECH_RATE, ctx.redacted)
        store.record_call(ctx.call_id, channel=ctx.transport.info.channel,
                          source=ctx.transport.info.caller_id,
                          duration_s=len(caller) / SPEECH_RATE,
                          caller_audio_sha256=store.audio.put(caller, SPEECH_RATE)
                          if len(caller) else None,
                          models=self.assistant.describe(), turns=records,
                          started_at=started_at, status=summary.get("disposition", ""),
                          summary=summary)
        return True
