"""Scripted calls with expectations, run through the same dialogue code as live calls.

The YAML format is a contract shared with other test suites: ``customers``
and ``outages`` seed a fresh demo CRM per run; each call is a list of turns
(``say``, ``audio`` or ``dtmf``) with per-turn and per-call expectations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from nlu.crm import Ticket
from nlu.crm.demo import DemoCRM
from nlu.dialogue.manager import DialogueManager
from nlu.dialogue.state import TurnOutcome
from nlu.readings import places_prompt, reading_that_fits, reading_that_names
from voicedesk.errors import ConfigError

TURN_KEYS = {"say", "audio", "dtmf", "expect"}
TURN_EXPECT = {"intent", "slots", "verified", "handoff", "ticket", "reply_contains",
               "reply_not_contains"}
CALL_KEYS = {"name", "caller_id", "turns", "expect"}
CALL_EXPECT = {"tickets", "handoff", "verified", "reply_contains", "never_says"}
# ``today`` (extra to the contract): the date the calls happen on, so that "next Tuesday"
# means the same day whenever the file is run; the real date when absent.
TOP_KEYS = {"customers", "outages", "calls", "today"}

# Builds a dialogue manager over a CRM; the runner supplies a fresh CRM per call.
ManagerFactory = Callable[[DemoCRM], DialogueManager]


class Hear(Protocol):
    """A caller turn -> the words heard (the line itself in text mode, ASR in --audio)."""

    def __call__(self, turn: dict[str, Any], base: Path, hint: str = "",
                 lengths: frozenset[int] = frozenset(), places: Sequence[str] = ()) -> str:
        """``base``: the scenario file's folder; ``hint``: how the answer the assistant
        asked for is written (DialogueManager.hearing_hint); ``lengths``: the digit
        counts a number in it may have (DialogueManager.digit_lengths); ``places``: the
        towns an address in it may name (DialogueManager.known_places)."""
        ...


@dataclass
class TurnResult:
    caller: str
    reply: str
    intent: str
    confidence: float
    slots: dict[str, str]
    verified: bool
    handoff: bool
    tickets: list[dict[str, Any]]
    failures: list[str] = field(default_factory=list)
    recognised_intent: str = ""  # the recogniser's choice, where a flow carried the turn on


@dataclass
class CallResult:
    name: str
    turns: list[TurnResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures and not any(t.failures for t in self.turns)


class _DigitsKeepingLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``pin: 0123`` as octal 83, ``eta: 18:00`` as 1080 minutes and
    ``phone_number: +15551230001`` as a number without its plus: digits that a caller
    keys or says keep the text they were written with."""


def _int_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    text = str(loader.construct_scalar(node))
    if ":" in text or (len(text) > 1 and text.startswith(("0", "+"))):
        return text
    return int(loader.construct_yaml_int(node))


_DigitsKeepingLoader.add_constructor("tag:yaml.org,2002:int", _int_or_text)


def load_scenarios(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_DigitsKeepingLoader)  # a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"scenario file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("calls"), list):
        raise ConfigError(f"scenario file {path} needs a top-level `calls:` list")
    _check_keys(data, TOP_KEYS, f"{path}")
    if "today" in data and not isinstance(data["today"], dt.date):
        raise ConfigError(f"{path}: `today` must be a date such as 2026-12-01, "
                          f"not {data['today']!r}")
    for i, call in enumerate(data["calls"], 1):
        where = f"{path}: call {i} ({call.get('name', 'unnamed')})"
        _check_keys(call, CALL_KEYS, where)
        _check_keys(call.get("expect") or {}, CALL_EXPECT, f"{where} expect")
        if not call.get("turns"):
            raise ConfigError(f"{where}: no turns")
        for j, turn in enumerate(call["turns"], 1):
            _check_keys(turn, TURN_KEYS, f"{where} turn {j}")
            _check_keys(turn.get("expect") or {}, TURN_EXPECT, f"{where} turn {j} expect")
            if sum(k in turn for k in ("say", "audio", "dtmf")) != 1:
                raise ConfigError(f"{where} turn {j}: needs exactly one of say, audio, dtmf")
    return data


def _check_keys(mapping: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def text_mode(turn: dict[str, Any], base: Path, hint: str = "",
              lengths: frozenset[int] = frozenset(), places: Sequence[str] = ()) -> str:
    if "audio" in turn:
        raise ConfigError(f"turn with audio {turn['audio']} needs --audio mode (ASR)")
    return str(turn["say"])


def run_scenarios(path: Path, make_manager: ManagerFactory, hear: Hear = text_mode,
                  on_call: Callable[[CallResult], None] | None = None) -> list[CallResult]:
    data = load_scenarios(path)
    results = []
    for call in data["calls"]:
        crm = DemoCRM()
        crm.load(data.get("customers") or [], data.get("outages") or [])
        manager = make_manager(crm)
        if data.get("today"):
            manager.extractor = dataclasses.replace(manager.extractor, today=data["today"])
        result = run_call(call, manager, hear, path.parent)
        results.append(result)
        if on_call is not None:
            on_call(result)
    return results


def run_call(call: dict[str, Any], manager: DialogueManager, hear: Hear,
             base: Path) -> CallResult:
    result = CallResult(name=str(call.get("name", "unnamed")))
    state = manager.start(str(call.get("caller_id", "")))
    created: list[Ticket] = []
    unheard: list[str] = []
    for index, turn in enumerate(call["turns"]):
        if "dtmf" in turn:
            caller = f"[dtmf {turn['dtmf']}]"
            outcome = manager.handle(state, dtmf=str(turn["dtmf"]))
        else:
            caller = hear(turn, base, manager.hearing_hint(state), manager.digit_lengths(state),
                          manager.known_places(state))
            outcome = manager.handle(state, text=caller)
        created += outcome.tickets
        turn_result = TurnResult(caller, outcome.reply, outcome.intent,
                                 round(outcome.confidence, 3), outcome.slots, outcome.verified,
                                 outcome.handoff, [_ticket_dict(t) for t in outcome.tickets])
        turn_result.recognised_intent = outcome.recognised_intent
        turn_result.failures = check_turn(turn.get("expect") or {}, outcome)
        result.turns.append(turn_result)
        if outcome.end_call:
            # the script went on: what its later turns expect must not pass unheard
            checked = [i + 1 for i, later in enumerate(call["turns"]) if i > index
                       and (later.get("expect") or {})]
            if checked:
                unheard.append(f"the call ended after turn {index + 1} "
                               f"({'transferred' if outcome.handoff else 'hung up'}); turn(s) "
                               f"{', '.join(map(str, checked))} and their expectations were "
                               f"never heard")
            break
    result.summary = manager.summary(state)
    result.failures = unheard + check_call(call.get("expect") or {}, result, created,
                                           state.verified, state.handoff)
    return result


def _ticket_dict(ticket: Ticket) -> dict[str, Any]:
    return {"id": ticket.id, "type": ticket.type, "priority": ticket.priority,
            "status": ticket.status, "account_number": ticket.account_number, **ticket.fields}


def _norm(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip().lower()


def _subset(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    return all(k in actual and _norm(actual[k]) == _norm(v) for k, v in expected.items())


def _contains(text: str, needles: Iterable[Any]) -> list[str]:
    return [str(n) for n in needles if str(n).lower() not in text.lower()]


def check_turn(expect: dict[str, Any], outcome: TurnOutcome) -> list[str]:
    failures = []
    if "intent" in expect and outcome.intent != expect["intent"]:
        failures.append(f"intent {outcome.intent!r}, expected {expect['intent']!r}")
    if "slots" in expect and not _subset(expect["slots"], outcome.slots):
        failures.append(f"slots {outcome.slots}, expected at least {expect['slots']}")
    for key in ("verified", "handoff"):
        if key in expect and bool(getattr(outcome, key)) != bool(expect[key]):
            failures.append(f"{key} {getattr(outcome, key)}, expected {expect[key]}")
    if "ticket" in expect and not any(_subset(expect["ticket"], _ticket_dict(t))
                                      for t in outcome.tickets):
        made = [_ticket_dict(t) for t in outcome.tickets]
        failures.append(f"no ticket matching {expect['ticket']} created in this turn ({made})")
    missing = _contains(outcome.reply, _listed(expect.get("reply_contains")))
    if missing:
        failures.append(f"reply {outcome.reply!r} lacks {missing}")
    present = [n for n in _listed(expect.get("reply_not_contains"))
               if str(n).lower() in outcome.reply.lower()]
    if present:
        failures.append(f"reply {outcome.reply!r} contains {present}")
    return failures


def check_call(expect: dict[str, Any], result: CallResult, tickets: list[Ticket],
               verified: bool, handoff: bool) -> list[str]:
    failures = []
    replies = " ".join(t.reply for t in result.turns)
    if "tickets" in expect:
        wanted = expect["tickets"] or []
        made = [_ticket_dict(t) for t in tickets]
        if not wanted and made:
            failures.append(f"expected no ticket, created {made}")
        if not _match_distinct(wanted, made):
            failures.append(f"tickets {made} do not cover {wanted}")
    for key, actual in (("handoff", handoff), ("verified", verified)):
        if key in expect and bool(actual) != bool(expect[key]):
            failures.append(f"call {key} {actual}, expected {expect[key]}")
    missing = _contains(replies, _listed(expect.get("reply_contains")))
    if missing:
        failures.append(f"no reply contains {missing}")
    said = [n for n in _listed(expect.get("never_says")) if str(n).lower() in replies.lower()]
    if said:
        failures.append(f"the assistant said {said}")
    return failures


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _match_distinct(wanted: list[dict[str, Any]], made: list[dict[str, Any]]) -> bool:
    """Each expected ticket matches a different created ticket (a small bipartite search)."""

    def search(i: int, used: frozenset[int]) -> bool:
        if i == len(wanted):
            return True
        return any(j not in used and _subset(wanted[i], made[j]) and search(i + 1, used | {j})
                   for j in range(len(made)))

    return search(0, frozenset())


def report(results: list[CallResult]) -> dict[str, Any]:
    passed = sum(r.passed for r in results)
    return {
        "passed": passed,
        "failed": len(results) - passed,
        "calls": [
            {"name": r.name, "passed": r.passed, "failures": r.failures,
             "turns": [vars(t) for t in r.turns], "summary": r.summary}
            for r in results
        ],
    }


class AudioHearing:
    """--audio mode: each caller line is spoken by another voice and heard through ASR."""

    def __init__(self, transcriber: Any, voice: Any) -> None:
        self.transcriber = transcriber
        self.voice = voice

    def __call__(self, turn: dict[str, Any], base: Path, hint: str = "",
                 lengths: frozenset[int] = frozenset(), places: Sequence[str] = ()) -> str:
        from asr.audio import SPEECH_RATE, load_audio, resample
        from asr.transcriber import AlternativesTranscriber

        if "audio" in turn:
            path = Path(turn["audio"])
            samples = load_audio(path if path.is_absolute() else base / path).samples
        else:
            chunks = list(self.voice.synthesize(speakable(str(turn["say"]))))
            samples = resample(np.concatenate(chunks), self.voice.sample_rate, SPEECH_RATE)
        # Greedy, as a live call hears: a turn's words do not change from run to run.
        heard = self.transcriber.transcribe(samples, hint or None, fallback=False).text
        if not isinstance(self.transcriber, AlternativesTranscriber):
            return heard
        alternatives = self.transcriber.alternatives
        heard = reading_that_fits(heard, lambda: alternatives(samples, hint or None), lengths)
        return reading_that_names(
            heard, lambda: alternatives(samples, places_prompt(hint, places)), places)


def speakable(text: str) -> str:
    """How a caller reads a line aloud: account numbers and PINs digit by digit.

    A text-to-speech voice would say "40011234" as "forty million ..."; people
    read identifiers one digit at a time, with a pause between two numbers.
    Money, times and decimals are left as they are.
    """
    def digits(match: re.Match[str]) -> str:
        return ", ".join(match.group())

    paused = re.sub(r"(?<=\d) (?=\d)", ". ", text)  # two numbers in a row: a pause between
    return re.sub(r"(?<![$\d.,:])\d{3,}(?![\d.,:]\d)", digits, paused)
