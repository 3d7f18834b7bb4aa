"""A whole call from a recording of the caller: the main job on the defaults.

webrtcvad splits the recording into turns; for each turn Whisper transcribes,
the LLM recognises the intent, the dialogue flow decides and words the reply
(the LLM may reword it, keeping every fact), and Piper speaks it. The
outputs are written to a scratch folder that is renamed into place only when
the call is complete, and the call is stored in one transaction, so a failure
leaves neither a half-written folder nor half a call in the store.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asr.audio import SPEECH_RATE, Audio, load_audio
from asr.transcript import Segment, Transcript, Word
from nlu.crm.demo import DemoCRM
from nlu.dialogue.manager import DialogueManager
from nlu.dialogue.state import DialogueState, TurnOutcome
from training.store import CallStore, TurnRecord
from voice.assistant import Assistant, SpokenReply
from voice.recording import lay_out, render_stereo, write_transcripts, write_wav
from voice.sentences import split_sentences
from voice.vad import SpeechSpan, split_turns
from voicedesk.errors import AudioError, VoicedeskError


@dataclass
class TurnResult:
    index: int
    span: SpeechSpan
    transcript: Transcript
    outcome: TurnOutcome
    reply: SpokenReply
    reply_source: str  # "flow" or "llm"
    latency_ms: dict[str, float]
    redactions: dict[str, int]  # card numbers removed before anything saw the turn


@dataclass
class CallResult:
    call_id: str
    out_dir: Path
    turns: list[TurnResult]
    record: dict[str, Any]
    summary: dict[str, Any]


def prepare_out_dir(out: Path | None) -> Path:
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path.cwd() / f"voicedesk-call-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path.cwd() / f"voicedesk-call-{stamp}-{n}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VoicedeskError(f"output folder {out} already exists and is not empty; "
                             f"choose another --out")
    return out


def run_file_call(assistant: Assistant, store: CallStore, audio_path: Path,
                  out: Path | None = None, channel: int | None = None,
                  on_turn: Any = None, crm: Any = None, caller_id: str = "") -> CallResult:
    out_dir = prepare_out_dir(out)
    caller = load_audio(audio_path, SPEECH_RATE, channel)
    spans = split_turns(caller, assistant.config.vad)
    if not spans:
        raise AudioError(f"no speech found in {audio_path} ({caller.duration:.1f} s of audio is "
                         f"silence or noise)")
    if crm is None:
        crm = DemoCRM(store.url)
        crm.seed_if_empty()
    manager = assistant.dialogue(crm)
    state = manager.start(caller_id)
    call_id = store.new_call_id()
    started_at = datetime.now(UTC)
    rate = SPEECH_RATE
    greeting_text = assistant.domain.prompts.get("greeting", "")
    greeting = assistant.speak([greeting_text], rate) if greeting_text else None
    if greeting is not None:
        state.transcript.append(("agent", greeting.text))

    results: list[TurnResult] = []
    for span in spans:
        result = _run_turn(assistant, manager, state, caller, span, len(results))
        if result is None:
            continue
        results.append(result)
        if on_turn is not None:
            on_turn(result)
        if result.outcome.end_call:
            break  # transferred to a person, or the caller said goodbye
    if not results:
        raise AudioError(f"no words recognised in {audio_path}: {len(spans)} stretch(es) of "
                         f"sound, none of them speech Whisper could transcribe")
    summary = manager.summary(state)

    timeline = lay_out(caller.samples, rate, [r.span.end for r in results],
                       [r.span.start for r in results], [r.reply.audio for r in results],
                       [r.latency_ms["voice_to_voice_ms"] / 1000 for r in results],
                       greeting.audio if greeting is not None else None)
    record = _record(call_id, caller, assistant, results, timeline, greeting, started_at)
    record["summary"] = summary

    scratch = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        write_wav(scratch / "conversation.wav", render_stereo(timeline, rate), rate)
        write_transcripts(scratch, record)
        _store(store, call_id, caller, assistant, results, started_at, summary)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        scratch.rename(out_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return CallResult(call_id, out_dir, results, record, summary)


def _run_turn(assistant: Assistant, manager: DialogueManager, state: DialogueState,
              caller: Audio, span: SpeechSpan, index: int) -> TurnResult | None:
    started = time.perf_counter()
    transcript = assistant.transcriber.transcribe(caller.slice(span.start, span.end))
    asr_ms = (time.perf_counter() - started) * 1000
    transcript, redactions = _scrub_cards(transcript, caller, span,
                                          manager.expected_digits(state) > 0)
    if not transcript.text.strip():
        return None  # a cough or line noise: not a turn
    started = time.perf_counter()
    outcome = manager.handle(state, text=transcript.text)
    nlu_ms = (time.perf_counter() - started) * 1000
    secrets = tuple(v for k, v in state.slots.items()
                    if k in assistant.domain.slots and assistant.domain.slots[k].sensitive)
    started = time.perf_counter()
    wording = assistant.word(outcome.reply, transcript.text, secrets)
    wording_ms = (time.perf_counter() - started) * 1000
    reply = assistant.speak(split_sentences(wording.text), caller.sample_rate)
    endpoint_ms = span.endpoint_delay * 1000
    latency = {
        "endpoint_ms": endpoint_ms,
        "asr_ms": asr_ms,
        "nlu_ms": nlu_ms,
        "first_sentence_ms": wording_ms + reply.latency_ms.get("first_sentence_ms", 0.0),
        "tts_first_audio_ms": reply.latency_ms.get("tts_first_audio_ms", 0.0),
        "reply_total_ms": wording_ms + reply.latency_ms.get("reply_total_ms", 0.0),
    }
    latency["voice_to_voice_ms"] = (endpoint_ms + asr_ms + nlu_ms + latency["first_sentence_ms"]
                                    + latency["tts_first_audio_ms"])
    latency = {k: round(v, 1) for k, v in latency.items()}
    return TurnResult(index, span, transcript, outcome, reply, wording.source, latency,
                      redactions)


def _scrub_cards(transcript: Transcript, caller: Audio, span: SpeechSpan,
                 digits_asked: bool) -> tuple[Transcript, dict[str, int]]:
    """Card numbers out of the turn (text, words, and the caller's audio, in place) before
    the dialogue, the outputs or the store see it (PCI DSS)."""
    from training.data.pci import scrub_turn

    rows = [{"word": w.text, "start": w.start, "end": w.end, "probability": w.probability}
            for w in transcript.words]
    clip = caller.slice(span.start, span.end)
    scrubbed = scrub_turn(transcript.text, rows, "", clip, caller.sample_rate,
                          digits_asked=digits_asked)
    if not scrubbed.changed:
        return transcript, {}
    first = round(span.start * caller.sample_rate)
    caller.samples[first:first + len(scrubbed.samples)] = scrubbed.samples
    words = tuple(Word(float(r["start"]), float(r["end"]), str(r["word"]),
                       float(r.get("probability", 0.0))) for r in scrubbed.words)
    segment = Segment(words[0].start if words else 0.0, words[-1].end if words else 0.0,
                      scrubbed.transcript, words)
    return Transcript((segment,), transcript.language, transcript.duration), scrubbed.counts


def _record(call_id: str, caller: Audio, assistant: Assistant, results: list[TurnResult],
            timeline: Any, greeting: SpokenReply | None, started_at: datetime) -> dict[str, Any]:
    rate = caller.sample_rate
    turns = []
    for r, offset, reply_start in zip(results, timeline.turn_offsets, timeline.reply_starts,
                                      strict=True):
        caller_part = r.transcript.to_dict()
        for w in caller_part["words"]:  # word times on the conversation's clock
            w["start"] = round(w["start"] + r.span.start + offset, 3)
            w["end"] = round(w["end"] + r.span.start + offset, 3)
        turns.append({
            "index": r.index,
            "caller": {"start": round(r.span.start + offset, 3),
                       "end": round(r.span.end + offset, 3),
                       "recording_start": round(r.span.start, 3),
                       "recording_end": round(r.span.end, 3), **caller_part},
            "intent": r.outcome.intent,
            "intent_confidence": round(r.outcome.confidence, 4),
            "slots": _public_slots(assistant, r.outcome.slots),
            "verified": r.outcome.verified,
            "handoff": r.outcome.handoff,
            "tickets": [{"id": t.id, "type": t.type, "priority": t.priority}
                        for t in r.outcome.tickets],
            "knowledge_source": r.outcome.knowledge_source,
            "assistant": {"start": round(reply_start, 3),
                          "end": round(reply_start + len(r.reply.audio) / rate, 3),
                          "text": r.reply.text, "source": r.reply_source},
            "latency_ms": r.latency_ms,
        })
    record: dict[str, Any] = {
        "call_id": call_id,
        "started_at": started_at.isoformat(),
        "source": caller.source,
        "sample_rate": rate,
        "channels": {"left": "caller", "right": "assistant"},
        "models": assistant.describe(),
        "turns": turns,
    }
    if greeting is not None:
        record["greeting"] = {"text": greeting.text, "start": 0.0,
                              "end": round(len(greeting.audio) / rate, 3)}
    return record


def _public_slots(assistant: Assistant, slots: dict[str, str]) -> dict[str, str]:
    """Slots as written to transcripts and the store: secrets masked, never kept."""
    spec = assistant.domain.slots
    return {k: ("[withheld]" if k in spec and spec[k].sensitive else v) for k, v in slots.items()}


def _store(store: CallStore, call_id: str, caller: Audio, assistant: Assistant,
           results: list[TurnResult], started_at: datetime, summary: dict[str, Any]) -> None:
    rate = caller.sample_rate
    records = []
    for r in results:
        records.append(TurnRecord(
            index=r.index,
            caller_start_s=r.span.start,
            caller_end_s=r.span.end,
            caller_audio_sha256=store.audio.put(caller.slice(r.span.start, r.span.end), rate),
            transcript=r.transcript.text,
            asr_confidence=r.transcript.confidence,
            words=r.transcript.to_dict()["words"],  # type: ignore[arg-type]
            intent=r.outcome.intent,
            intent_confidence=r.outcome.confidence,
            slots=_public_slots(assistant, r.outcome.slots),
            reply=r.reply.text,
            reply_source=r.reply_source,
            reply_audio_sha256=store.audio.put(r.reply.audio, rate) if len(r.reply.audio) else None,
            latency_ms=r.latency_ms,
            redactions=r.redactions,
        ))
    store.record_call(call_id, channel="file", source=caller.source, duration_s=caller.duration,
                      caller_audio_sha256=store.audio.put(caller.samples, rate),
                      models=assistant.describe(), turns=records, started_at=started_at,
                      status=summary["disposition"], summary=summary)
