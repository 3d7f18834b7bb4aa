"""The dialogue manager: runs the domain pack's flows, one caller turn at a time.

Every action (verifying, reading account data, creating a ticket, handing
off) is decided here by the flow, never by the language model: the LLM picks
the intent from the catalogue and may reword a reply, nothing more. Account
data is read or changed only after identity verification, and sensitive slot
values (PIN, date of birth) are scrubbed from every reply as a last guard.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nlu.crm import CRM, Ticket
from nlu.dialogue.state import DialogueState, TurnOutcome
from nlu.domain import DomainPack
from nlu.knowledge import KnowledgeBase
from nlu.numbers import spoken_digits_to_text
from nlu.slots import SlotExtractor, SlotSpec
from nlu.understanding import Understanding

Recognize = Callable[[str, str], Understanding]  # (text, last agent line) -> understanding

ANGER = re.compile(r"\b(ridiculous|useless|furious|angry|outrageous|disgusting|pathetic|"
                   r"fed up|sick of|fucking|bloody|damn|shit|hate you|worst)\b", re.I)
YES = re.compile(r"\b(yes|yeah|yep|sure|please do|ok(ay)?|go ahead|correct|that's right)\b", re.I)
NO = re.compile(r"\b(no|nope|not now|no thanks)\b", re.I)
ALWAYS_SWITCH = {"speak_to_agent", "goodbye"}
IDENTITY = {"account_number", "pin", "date_of_birth"}
FILLER = re.compile(r"\b(it'?s|it is|my|is|the|and|account|number|no|pin|code|date|of|birth|"
                    r"born|on|hi|hello|yes|sure|ok(ay)?|here|that'?s|i|am|er|um|uh)\b", re.I)


@dataclass(frozen=True)
class Policy:
    """Thresholds an operator tunes; defaults are conservative."""

    min_confidence: float = 0.35  # below this an intent is a misunderstanding
    switch_confidence: float = 0.6  # a new request mid-flow must be this sure
    max_misunderstandings: int = 2  # consecutive, then a person takes over
    max_verify_failures: int = 3
    anger_handoff: int = 2  # anger words across the call


class _Formatter(string.Formatter):
    """``{bill.balance_due}`` from nested dicts; a missing field is a clear error."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        value: Any = kwargs
        for part in field_name.split("."):
            if not isinstance(value, dict) or part not in value or value[part] is None:
                raise KeyError(field_name)
            value = value[part]
        return value, field_name


def render(template: str, facts: dict[str, Any]) -> str:
    return " ".join(_Formatter().format(template, **facts).split())


class DialogueManager:
    def __init__(self, domain: DomainPack, crm: CRM, recognize: Recognize,
                 extractor: SlotExtractor, knowledge: KnowledgeBase | None = None,
                 policy: Policy | None = None) -> None:
        self.domain = domain
        self.crm = crm
        self.recognize = recognize
        self.extractor = extractor
        self.knowledge = knowledge
        self.policy = policy or Policy()

    def expected_digits(self, state: DialogueState) -> int:
        """How many digits the slot just asked for holds at least (0: no digits asked for)."""
        spec = self._awaited(state)
        return spec.min_digits if spec is not None and spec.type == "digits" else 0

    def hearing_hint(self, state: DialogueState) -> str:
        """How the answer to the slot just asked for is written (``SlotSpec.hint``), or ""."""
        spec = self._awaited(state)
        return spec.hint if spec is not None else ""

    def digit_lengths(self, state: DialogueState) -> frozenset[int]:
        """While digits are asked for, how many digits a number in the answer may have: any
        digits slot's count (callers give the account number and PIN in one breath);
        empty when no digits are asked for, or a slot takes any count."""
        if self.expected_digits(state) == 0:
            return frozenset()
        lengths: set[int] = set()
        for spec in self.extractor.specs.values():
            if spec.type == "digits":
                if spec.max_digits - spec.min_digits > 2:
                    return frozenset()  # a slot of (almost) any length: every reading fits
                lengths.update(range(spec.min_digits, spec.max_digits + 1))
        return frozenset(lengths)

    def known_places(self, state: DialogueState) -> list[str]:
        """While an address is asked for, the places the operator serves (``CRM.service_areas``);
        empty otherwise."""
        spec = self._awaited(state)
        return self.crm.service_areas() if spec is not None and spec.type == "address" else []

    def _awaited(self, state: DialogueState) -> SlotSpec | None:
        """The spec of the slot the assistant just asked for, if it asked for one."""
        return self.extractor.specs.get(state.pending or "")

    def start(self, caller_id: str = "") -> DialogueState:
        state = DialogueState(caller_id=caller_id)
        if caller_id:
            state.customer = self.crm.customer_by_phone(caller_id)
        return state

    # ---- one turn ----------------------------------------------------------------
    def handle(self, state: DialogueState, text: str = "", dtmf: str = "") -> TurnOutcome:
        if state.ended or state.handoff:
            return self._outcome(state, "", "", 0.0, {}, [], None)
        said: list[str] = []
        before_tickets = len(state.tickets)
        if dtmf:
            state.transcript.append(("caller", f"[keypad {_mask_digits(dtmf)}]"))
            found = self.extractor.from_dtmf(dtmf, state.pending)
            intent, confidence = state.flow or "", 1.0
        else:
            state.transcript.append(("caller", text))
            last_agent = next((t for s, t in reversed(state.transcript) if s == "agent"), "")
            understanding = self.recognize(text, last_agent)
            intent, confidence = understanding.intent, understanding.confidence
            found = self.extractor.extract(text, state.pending)
            state.anger += len(ANGER.findall(text))
        progress = bool(state.pending and state.pending in found)
        if progress and state.flow:
            intent = state.flow  # the turn answered the assistant's question
        if not dtmf and not _only_identity(text):
            state.intents.append(intent)
        state.slots.update(found)
        source = None

        if found.keys() & IDENTITY and not state.verified and self._can_verify(state):
            # Identity volunteered at any point ("it's 40011234, pin 4821") is checked now.
            if not self._verify(state, said):
                return self._finish(state, said, intent, confidence, found, before_tickets, None)
            progress = True
            if state.flow is None and (dtmf or _only_identity(text)):
                said.append("How can I help you today?")
                return self._finish(state, said, intent, confidence, found, before_tickets, None)

        if state.anger >= self.policy.anger_handoff:
            self._handoff(state, said, "caller is upset")
        elif intent == "speak_to_agent" and confidence >= self.policy.min_confidence:
            self._handoff(state, said, "caller asked for a person")
        elif state.offered_handoff and not dtmf and YES.search(text) and not progress:
            self._handoff(state, said, "no answer in the knowledge base")
        elif progress and state.flow:
            state.misunderstandings = 0
            source = self._run(state, said, text)
        elif intent == "goodbye" and confidence >= self.policy.switch_confidence:
            state.offered_handoff = False
            self._start_flow(state, intent)
            source = self._run(state, said, text)
        elif self._unclear(state, intent, confidence, found):
            self._misunderstood(state, said)
        elif state.pending and intent == state.flow:
            self._unanswered(state, said)  # the same request again, without the answer
        else:
            state.misunderstandings = 0
            if state.offered_handoff and NO.search(text):
                state.offered_handoff = False
            if intent != state.flow or state.pending is None:
                self._start_flow(state, intent)
            source = self._run(state, said, text)
        return self._finish(state, said, intent, confidence, found, before_tickets, source)

    def _finish(self, state: DialogueState, said: list[str], intent: str, confidence: float,
                found: dict[str, str], before_tickets: int, source: str | None) -> TurnOutcome:
        if source:
            state.knowledge_sources.append(source)
        reply = self._scrub(state, " ".join(said))
        state.transcript.append(("agent", reply))
        return self._outcome(state, reply, intent, confidence, found,
                             state.tickets[before_tickets:], source)

    def _unclear(self, state: DialogueState, intent: str, confidence: float,
                 found: dict[str, str]) -> bool:
        """Too unsure to act, or off-topic while the assistant waits for an answer.

        An unsure intent still stands when the turn carries a value its own flow asks
        for: "What's next, I'm ticket DKD1" (misheard) is unsure as words, but holds a
        ticket number, which only makes sense for the ticket request it scored highest.
        """
        if confidence < self.policy.min_confidence:
            return not (found.keys() - IDENTITY) & self._flow_slots(intent)
        if state.pending is None:
            return False
        if intent == "out_of_scope":
            return True
        return bool(state.flow and intent != state.flow and intent not in ALWAYS_SWITCH
                    and confidence < self.policy.switch_confidence)

    def _can_verify(self, state: DialogueState) -> bool:
        has_account = state.customer is not None or "account_number" in state.slots
        return has_account and bool(state.slots.keys() & {"pin", "date_of_birth"})

    def _outcome(self, state: DialogueState, reply: str, intent: str, confidence: float,
                 found: dict[str, str], tickets: list[Ticket], source: str | None) -> TurnOutcome:
        return TurnOutcome(reply=reply, intent=intent, confidence=confidence, slots=dict(found),
                           verified=state.verified, handoff=state.handoff,
                           tickets=tuple(tickets), knowledge_source=source,
                           end_call=state.ended or state.handoff)

    # ---- flows -------------------------------------------------------------------
    def _start_flow(self, state: DialogueState, intent: str) -> None:
        state.flow, state.step, state.pending = intent, 0, None
        state.flow_ticket = None
        for key in ("ticket", "outage", "plan"):
            state.facts.pop(key, None)
        keep = {"account_number", "pin", "date_of_birth", "phone_number"}
        state.slots = {k: v for k, v in state.slots.items()
                       if k in keep or k in self._flow_slots(intent)}

    def _flow_slots(self, intent: str) -> set[str]:
        wanted = set()
        for step in self.domain.flows.get(intent, []):
            if isinstance(step, dict):
                arg = next(iter(step.values()))
                if "ask" in step:
                    wanted.add(arg["slot"] if isinstance(arg, dict) else arg)
                if "create_ticket" in step:
                    wanted.update(arg.get("fields", []))
                if "update" in step:
                    wanted.add(arg["slot"])
        return wanted

    def _run(self, state: DialogueState, said: list[str], text: str) -> str | None:
        """Run steps until one waits for the caller or the flow ends."""
        steps = self.domain.flows.get(state.flow or "", [])
        source = None
        while state.step < len(steps):
            step = steps[state.step]
            kind = step if isinstance(step, str) else next(iter(step))
            arg = None if isinstance(step, str) else step[kind]
            if kind == "verify":
                if not self._verify(state, said):
                    return source
            elif kind == "ask":
                slot = arg["slot"] if isinstance(arg, dict) else arg
                unless = arg.get("unless") if isinstance(arg, dict) else None
                if not (unless and self._fact(state, unless)) and slot not in state.slots:
                    self._ask(state, said, slot)
                    return source
            elif kind == "lookup":
                self._lookup(state, arg)
            elif kind == "create_ticket":
                if not (arg.get("unless") and self._fact(state, arg["unless"])):
                    self._create_ticket(state, arg)
            elif kind == "update":
                self._update(state, arg)
            elif kind == "say":
                said.append(self._say(state, arg))
            elif kind == "knowledge":
                source = self._knowledge(state, said, text)
            elif kind == "handoff":
                self._handoff(state, said, str(arg or "flow"))
                return source
            elif kind == "end":
                said.append(self.domain.prompts.get(
                    "goodbye", "Thank you for calling. Goodbye!"))
                state.ended = True
            state.step += 1
        state.pending = None
        if state.flow and state.flow not in state.completed_flows:
            state.completed_flows.append(state.flow)
        state.flow = None
        return source

    def _fact(self, state: DialogueState, name: str) -> bool:
        return bool(state.verified if name == "verified" else state.facts.get(name))

    def _ask(self, state: DialogueState, said: list[str], slot: str) -> None:
        state.pending = slot
        said.append(self.domain.slots[slot].prompt)

    # ---- identity ------------------------------------------------------------------
    def _verify(self, state: DialogueState, said: list[str]) -> bool:
        if state.verified:
            return True
        account = state.slots.get("account_number")
        if account and (state.customer is None or state.customer.account_number != account):
            state.customer = self.crm.customer(account)
            if state.customer is None:
                state.slots.pop("account_number", None)
                return self._verify_failed(state, said, "I couldn't find that account number.",
                                           "account_number")
        if state.customer is None:
            self._ask(state, said, "account_number")
            return False
        pin, dob = state.slots.get("pin"), state.slots.get("date_of_birth")
        if pin is None and dob is None:
            self._ask(state, said, "pin")
            return False
        ok = (pin is not None and pin == state.customer.pin) or (
            dob is not None and dob == state.customer.date_of_birth.isoformat())
        if not ok:
            state.slots.pop("pin", None)
            state.slots.pop("date_of_birth", None)
            return self._verify_failed(state, said, "That doesn't match our records.", "pin")
        state.verified = True
        state.pending = None
        first = state.customer.name.split()[0]
        said.append(f"Thank you, {first}, you're verified.")
        return True

    def _verify_failed(self, state: DialogueState, said: list[str], why: str,
                       slot: str) -> bool:
        state.verify_failures += 1
        if state.verify_failures >= self.policy.max_verify_failures:
            said.append(why)
            self._handoff(state, said, "identity could not be verified")
            return False
        said.append(why)
        self._ask(state, said, slot)
        return False

    # ---- actions -------------------------------------------------------------------
    def _lookup(self, state: DialogueState, what: str) -> None:
        customer = state.customer if state.verified else None
        if what == "bill" and customer:
            state.facts["bill"] = {"balance_due": f"{customer.balance_due:.2f}",
                                   "due_date": _spoken_date(customer.due_date)}
        elif what == "usage" and customer:
            allowance = ("an unlimited" if customer.data_allowance_gb is None
                         else f"{customer.data_allowance_gb:g} gigabyte")
            state.facts["usage"] = {"data_used_gb": f"{customer.data_used_gb:g}",
                                    "data_allowance": allowance}
        elif what == "outage":
            where = customer.area if customer else state.slots.get("address", "")
            outages = self.crm.outages_for(where) if where else []
            state.facts["outage"] = vars(outages[0]) if outages else None
        elif what == "ticket":
            ticket = self.crm.ticket(state.slots.get("ticket_id", ""))
            state.facts["ticket"] = _ticket_facts(ticket) if ticket else None
        elif what == "customer_tickets" and customer:
            state.facts["customer_tickets"] = [_ticket_facts(t) for t in
                                               self.crm.tickets_for(customer.account_number)]

    def _create_ticket(self, state: DialogueState, spec: dict[str, Any]) -> None:
        if state.flow_ticket is not None:
            return
        kind = spec["type"]
        priority = spec.get("priority") or self.domain.work_orders[kind].get("priority", "normal")
        fields = {f: state.slots[f] for f in spec.get("fields", []) if f in state.slots}
        fields["reported_by_call"] = True
        account = state.customer.account_number if state.verified and state.customer else None
        ticket = self.crm.create_ticket(kind, priority, account, fields)
        state.flow_ticket = ticket
        state.tickets.append(ticket)
        state.facts["ticket"] = _ticket_facts(ticket)

    def _update(self, state: DialogueState, spec: dict[str, Any]) -> None:
        if not (state.verified and state.customer):
            return
        value = state.slots.get(spec["slot"])
        if value is None:
            return
        state.customer = self.crm.update_customer(state.customer.account_number,
                                                  **{spec["field"]: value})
        if spec["field"] == "plan":
            plan = self.domain.plan(value) or {}
            state.facts["plan"] = {"name": value, "price": f"{plan.get('price', 0):.2f}"}

    def _say(self, state: DialogueState, arg: Any) -> str:
        if isinstance(arg, dict):
            arg = arg["then"] if self._fact(state, arg["if"]) else arg["else"]
        facts = {**state.facts, "slots": state.slots, "verified": state.verified}
        if state.customer and state.verified:
            facts["customer"] = {"name": state.customer.name, "plan": state.customer.plan}
        return render(str(arg), facts)

    def _knowledge(self, state: DialogueState, said: list[str], text: str) -> str | None:
        answer = self.knowledge.answer(text) if self.knowledge else None
        if answer is None:
            said.append("I'm not sure about that, and I'd rather not guess. Would you like me "
                        "to put you through to a colleague who can help?")
            state.offered_handoff = True
            return None
        said.append(answer.text)
        return answer.source

    def _misunderstood(self, state: DialogueState, said: list[str]) -> None:
        state.misunderstandings += 1
        if state.misunderstandings > self.policy.max_misunderstandings:
            self._handoff(state, said, "repeated misunderstanding")
            return
        said.append("Sorry, I didn't quite catch that.")
        if state.pending:
            said.append(self.domain.slots[state.pending].prompt)
        else:
            said.append("Could you tell me briefly what you're calling about?")

    def _unanswered(self, state: DialogueState, said: list[str]) -> None:
        """The caller repeats the request instead of answering: explain, then escalate."""
        slot = state.pending or ""
        state.misunderstandings += 1
        if state.misunderstandings > self.policy.max_misunderstandings:
            self._handoff(state, said, f"caller did not give the {slot.replace('_', ' ')}")
            return
        said.append("I can help with that, but I need this first.")
        said.append(self.domain.slots[slot].prompt)

    def _handoff(self, state: DialogueState, said: list[str], reason: str) -> None:
        state.handoff, state.handoff_reason = True, reason
        state.pending = None
        said.append("I'm transferring you to a colleague now. I've passed on a summary, so you "
                    "won't need to repeat yourself.")

    def _scrub(self, state: DialogueState, reply: str) -> str:
        """Never speak a secret back, whatever produced the words."""
        for slot, spec in self.domain.slots.items():
            value = state.slots.get(slot)
            if spec.sensitive and value and len(value) >= 3:
                reply = reply.replace(value, "[withheld]")
        if state.customer:
            for secret in (state.customer.pin, state.customer.date_of_birth.isoformat()):
                reply = reply.replace(secret, "[withheld]")
        return reply

    # ---- after the call ------------------------------------------------------------
    def summary(self, state: DialogueState) -> dict[str, Any]:
        """What a human agent (or an analyst) needs: no secrets, no raw PIN."""
        safe_slots = {k: self._scrub(state, v) for k, v in state.slots.items()
                      if k in self.domain.slots and not self.domain.slots[k].sensitive}
        requests = [i for i in dict.fromkeys(state.intents) if i and i != "out_of_scope"]
        last_caller = next((t for s, t in reversed(state.transcript) if s == "caller"), "")
        return {
            "disposition": self.disposition(state),
            "customer": state.customer.name if state.customer and state.verified else None,
            "account_number": state.customer.account_number if state.customer and
            state.verified else None,
            "verified": state.verified,
            "requests": requests,
            "completed": state.completed_flows,
            "tickets": [{"id": t.id, "type": t.type, "priority": t.priority} for t in
                        state.tickets],
            "slots": safe_slots,
            "handoff_reason": state.handoff_reason or None,
            "last_caller_words": _mask_digits(last_caller),
            "knowledge_sources": state.knowledge_sources,
            "text": self._summary_text(state, requests),
        }

    def _summary_text(self, state: DialogueState, requests: list[str]) -> str:
        who = (f"{state.customer.name} (verified)" if state.customer and state.verified
               else "an unverified caller")
        parts = [f"Call from {who} about {', '.join(requests) or 'an unclear request'}."]
        if state.tickets:
            parts.append("Tickets: " + ", ".join(f"{t.id} ({t.type})" for t in state.tickets)
                         + ".")
        if state.handoff:
            parts.append(f"Handed off: {state.handoff_reason}.")
        return " ".join(parts)

    @staticmethod
    def disposition(state: DialogueState) -> str:
        if state.handoff:
            return "handed_off"
        if state.flow is not None:
            return "abandoned"  # hung up in the middle of a flow
        if state.completed_flows and state.completed_flows != ["goodbye"]:
            return "resolved"
        return "unresolved"


def _spoken_date(date: Any) -> str:
    return f"{date:%B} {date.day}"


def _ticket_facts(ticket: Ticket) -> dict[str, Any]:
    return {"id": ticket.id, "type": ticket.type, "status": ticket.status.replace("_", " "),
            "priority": ticket.priority, "type_words": ticket.type.replace("_", " ")}


def _only_identity(text: str) -> bool:
    """'It's 40011234, pin 4821' asks for nothing: no flow should start from it."""
    rest = re.sub(r"[\d\W_]+", " ", FILLER.sub(" ", spoken_digits_to_text(text)))
    months = r"\b(january|february|march|april|may|june|july|august|september|october|" \
             r"november|december|st|nd|rd|th)\b"
    return len(re.sub(months, " ", rest, flags=re.I).split()) <= 1


def _mask_digits(text: str) -> str:
    return re.sub(r"\d", "#", text)
