"""Stage 3: the turn manager. Final transcripts and keypad digits in, reply sentences out.

The dialogue flows decide every action (``nlu.dialogue``); this stage decides
*when*: it starts a reply early from the transcript of a pause (kept only if
the final transcript says the same and the turn changes nothing in the CRM),
resolves a barge-in once the interrupting words are known (a backchannel or a
noise resumes the reply; anything else cuts it, and the history keeps only
what the caller heard), collects keypad digits, and prompts a silent caller
before hanging up politely.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from typing import Any

import numpy as np

from nlu.crm import CRM
from nlu.dialogue.manager import DialogueManager
from nlu.dialogue.state import DialogueState, TurnOutcome
from nlu.understanding import Understanding
from voice.context import CallContext, TurnLog
from voice.frames import (
    EndCall,
    Frame,
    Hangup,
    Interruption,
    InterruptionCancelled,
    KeypadDigits,
    ReplyText,
    SpeechStarted,
    Transcript,
    TurnEnded,
)
from voice.listening import expected_answer
from voice.pipeline import Stage
from voice.pool import URGENT
from voice.sentences import split_sentences
from voice.speaking import synthesize_for_line

log = logging.getLogger(__name__)
_WORDS = re.compile(r"[a-z0-9']+")


class WouldWrite(Exception):
    """An early start reached a CRM write: it must wait for the final transcript."""


class ReadOnlyCRM:
    """The CRM as an early start sees it: reads pass through, the first write stops it."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("create_", "update_", "delete_", "set_")):
            raise WouldWrite(name)
        return getattr(self._crm, name)


def normalise(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def first_pieces(text: str, first_words: int) -> list[str]:
    """Sentences, with a long first one split at a comma so speech can start sooner."""
    sentences = split_sentences(text)
    if sentences and len(sentences[0].split()) > first_words and "," in sentences[0]:
        head, _, tail = sentences[0].partition(",")
        if len(head.split()) >= 3 and tail.strip():
            sentences[:1] = [head + ",", tail.strip()]
    return sentences


class TurnManager(Stage):
    name = "turns"

    def __init__(self, ctx: CallContext, crm: CRM, caller_id: str = "") -> None:
        super().__init__()
        self.ctx = ctx
        a = ctx.assistant
        self._understood: dict[tuple[str, str], Understanding] = {}
        self.manager = DialogueManager(a.domain, crm, self._recognize, a.slots, a.knowledge)
        self._early_manager = DialogueManager(a.domain, ReadOnlyCRM(crm),  # type: ignore[arg-type]
                                              self._recognize, a.slots, a.knowledge)
        self.state: DialogueState = self.manager.start(caller_id)
        self.backchannels = {normalise(w) for w in ctx.config.call.backchannels.split(",")}
        self._early: tuple[str, asyncio.Task[tuple[DialogueState, TurnOutcome] | None]] | None \
            = None
        self._digits = ""
        self._digit_timer: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.Task[None] | None = None
        self._no_input = 0
        self._interrupted_at: float | None = None
        self._over_reply = False  # the turn began while the assistant was speaking
        self.turn_index = 0  # reply ids: each reply gets a new one

    # ---- the dialogue, shared by early start and the real turn ----------------------
    def _recognize(self, text: str, context: str) -> Understanding:
        key = (text, context)
        if key not in self._understood:
            self._understood[key] = self.ctx.assistant.recognizer.understand(text, context)
        return self._understood[key]

    def _try_early(self, text: str) -> tuple[DialogueState, TurnOutcome] | None:
        state = copy.deepcopy(self.state)
        try:
            return state, self._early_manager.handle(state, text=text)
        except WouldWrite:
            return None

    # ---- frames ----------------------------------------------------------------------
    async def process(self, frame: Frame) -> None:
        if isinstance(frame, Transcript):
            if frame.final:
                await self._final(frame)
            elif frame.stable and self.ctx.config.call.early_start:
                self._start_early(frame.text)
        elif isinstance(frame, SpeechStarted):
            self._cancel_idle()
            self._over_reply = frame.during_reply
        elif isinstance(frame, KeypadDigits):
            await self._digit(frame)
        elif isinstance(frame, Interruption):
            self._interrupted_at = frame.t
        elif isinstance(frame, InterruptionCancelled):
            self._interrupted_at = None
        elif isinstance(frame, Hangup):
            self._cancel_idle()
            if self._digit_timer:
                self._digit_timer.cancel()
            await self.push(frame)
        elif isinstance(frame, TurnEnded):
            pass
        else:
            await self.push(frame)

    def _start_early(self, text: str) -> None:
        key = normalise(text)
        if not key or (self._early and self._early[0] == key):
            return
        if self._early:
            self._early[1].cancel()
        task = asyncio.ensure_future(self._early_reply(text))
        self._early = (key, task)

    async def _early_reply(self, text: str) -> tuple[DialogueState, TurnOutcome] | None:
        """Decide the reply on a copy of the state and voice its first piece, in advance."""
        result = await self.ctx.pool.run(URGENT, self._try_early, text)
        if result is not None:
            pieces = first_pieces(result[1].reply, self.ctx.config.call.first_piece_words)
            if pieces and pieces[0] not in self.ctx.speech_ready:
                audio = await self.ctx.pool.run(URGENT, synthesize_for_line, self.ctx, pieces[0])
                self.ctx.speech_ready[pieces[0]] = audio
        return result

    async def _final(self, frame: Transcript) -> None:
        text = frame.text.strip()
        words = normalise(text)
        over_reply, self._over_reply = self._over_reply, False
        if over_reply and words in self.backchannels and self._interrupted_at is None:
            return  # "mhm" while we spoke, already resumed: listening, not a turn
        if self._interrupted_at is not None:
            if not words or words in self.backchannels:
                self._interrupted_at = None
                self.ctx.interrupted = False
                self.ctx.false_barge_ins += 1
                await self.broadcast(InterruptionCancelled(self.ctx.clock.now()))
                return
            self._cut_reply()
        if not words:
            self._arm_idle()
            return  # a noise the VAD took for speech; nothing to answer
        log_entry = TurnLog(len(self.ctx.turns), frame.start, frame.speech_end, frame.endpoint,
                            transcript=text, words=frame.words, confidence=frame.confidence,
                            caller_audio=frame.audio if frame.audio is not None else
                            np.zeros(0, dtype=np.float32), redactions=dict(frame.redactions))
        log_entry.latency_ms["endpoint_ms"] = _ms(frame.endpoint - frame.speech_end)
        log_entry.latency_ms["asr_final_ms"] = _ms(frame.t - frame.endpoint)
        started = time.perf_counter()
        outcome: TurnOutcome | None = None
        early = self._early
        self._early = None
        if early is not None and early[0] == words:
            result = await early[1]
            if result is not None:
                self.state, outcome = result
                log_entry.early_start = True
        elif early is not None:
            early[1].cancel()
            self.ctx.speech_ready.clear()
        if outcome is None:
            outcome = await self.ctx.pool.run(URGENT, self._handle, text)
        log_entry.latency_ms["llm_first_token_ms"] = _ms(time.perf_counter() - started)
        await self._reply(log_entry, outcome)

    def _handle(self, text: str = "", dtmf: str = "") -> TurnOutcome:
        return self.manager.handle(self.state, text=text, dtmf=dtmf)

    async def _reply(self, entry: TurnLog, outcome: TurnOutcome) -> None:
        entry.intent, entry.intent_confidence = outcome.intent, outcome.confidence
        entry.slots, entry.verified, entry.handoff = dict(outcome.slots), outcome.verified, \
            outcome.handoff
        entry.tickets = [{"id": t.id, "type": t.type, "priority": t.priority}
                         for t in outcome.tickets]
        entry.reply = outcome.reply
        self.ctx.turns.append(entry)
        self.ctx.expected_digits = self.manager.expected_digits(self.state)
        self.ctx.digit_lengths = self.manager.digit_lengths(self.state)
        self.ctx.expectation = expected_answer(self.ctx.expected_digits,
                                               self.ctx.digit_lengths,
                                               self.manager.hearing_hint(self.state))
        await self._say(outcome.reply, len(self.ctx.turns) - 1)
        if outcome.end_call:
            await self.push(EndCall("transfer" if outcome.handoff else "goodbye",
                                    transfer=outcome.handoff,
                                    summary=self.manager.summary(self.state)))
        else:
            self._arm_idle()

    async def _say(self, text: str, log_index: int) -> None:
        pieces = first_pieces(text, self.ctx.config.call.first_piece_words)
        self.turn_index += 1
        self.ctx.current_turn = log_index
        self.ctx.reply_active = bool(pieces)
        for i, piece in enumerate(pieces):
            await self.push(ReplyText(log_index, i, piece, i == len(pieces) - 1))

    def _cut_reply(self) -> None:
        """The caller talked over the reply: the history keeps only what they heard."""
        entry = self.ctx.turn(self.ctx.current_turn)
        self._interrupted_at = None
        self.ctx.interrupted = False
        self.ctx.reply_active = False
        self.ctx.current_turn = -1  # what is still queued for the old reply is dropped
        if entry is None:
            return
        entry.interrupted = True
        for i in range(len(self.state.transcript) - 1, -1, -1):
            speaker, said = self.state.transcript[i]
            if speaker == "agent":
                if entry.heard:
                    self.state.transcript[i] = ("agent", entry.heard)
                else:
                    del self.state.transcript[i]
                break

    # ---- keypad ----------------------------------------------------------------------
    async def _digit(self, frame: KeypadDigits) -> None:
        self._cancel_idle()
        if self._digit_timer:
            self._digit_timer.cancel()
        if frame.digits == "#":
            await self._digits_done()
            return
        self._digits += frame.digits
        self._digit_timer = asyncio.ensure_future(self._digits_after_pause())

    async def _digits_after_pause(self) -> None:
        await asyncio.sleep(self.ctx.config.call.dtmf_timeout_s)
        await self._digits_done()

    async def _digits_done(self) -> None:
        digits, self._digits = self._digits, ""
        if not digits:
            return
        now = self.ctx.clock.now()
        entry = TurnLog(len(self.ctx.turns), now, now, now, transcript="", dtmf=digits)
        started = time.perf_counter()
        outcome = await self.ctx.pool.run(URGENT, self._handle, "", digits)
        entry.latency_ms["llm_first_token_ms"] = _ms(time.perf_counter() - started)
        await self._reply(entry, outcome)

    # ---- a silent caller ---------------------------------------------------------------
    def _arm_idle(self) -> None:
        self._cancel_idle()
        self._idle_timer = asyncio.ensure_future(self._idle())

    def _cancel_idle(self) -> None:
        if self._idle_timer:
            self._idle_timer.cancel()
            self._idle_timer = None

    async def _idle(self) -> None:
        config = self.ctx.config.call
        while self.ctx.speaking():
            await asyncio.sleep(0.05)
        await asyncio.sleep(config.no_input_s)
        prompts = self.ctx.assistant.domain.prompts
        if self._no_input < config.no_input_prompts:
            self._no_input += 1
            text = prompts.get("no_input", "Are you still there? How can I help you?")
            self.state.transcript.append(("agent", text))
            await self._say_system(text, "no_input")
            self._arm_idle()
            return
        text = prompts.get("no_input_goodbye",
                           "I can't hear anything, so I'll end the call now. Please call "
                           "back any time. Goodbye.")
        self.state.transcript.append(("agent", text))
        await self._say_system(text, "no_input")
        await self.push(EndCall("no input", summary=self.manager.summary(self.state)))

    async def greet(self, text: str) -> None:
        self.state.transcript.append(("agent", text))
        await self._say_system(text, "greeting")
        self._arm_idle()

    async def _say_system(self, text: str, kind: str) -> None:
        now = self.ctx.clock.now()
        entry = TurnLog(len(self.ctx.turns), now, 0.0, now, reply=text, intent=kind)
        self.ctx.turns.append(entry)
        await self._say(text, entry.index)

    def summary(self) -> dict[str, Any]:
        return self.manager.summary(self.state)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
