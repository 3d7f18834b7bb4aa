"""The dialogue manager: runs the domain pack's flows, one caller turn at a time.

Every action (verifying, reading account data, creating a ticket, handing
off) is decided here by the flow, never by the language model: the LLM picks
the intent from the catalogue and may reword a reply, nothing more. Account
data is read or changed only after identity verification, and sensitive slot
values (PIN, date of birth) are scrubbed from every reply as a last guard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from nlu import prices
from nlu.crm import CRM, Customer, Ticket
from nlu.dialogue import contact, dates, offers, phrases
from nlu.dialogue.state import DialogueState, TurnOutcome
from nlu.dialogue.summary import call_summary, disposition, mask_digits
from nlu.domain import DomainPack
from nlu.knowledge import Answer, KnowledgeBase
from nlu.numbers import spoken_digits_to_text
from nlu.slots import SlotExtractor, SlotSpec, names_a_street
from nlu.understanding import Understanding
from training.data.digits import luhn_valid
from training.data.pii import RedactionPolicy, find_pii
from voicedesk.errors import VoicedeskError

Recognize = Callable[[str, str], Understanding]  # (text, last agent line) -> understanding

ALWAYS_SWITCH = {"speak_to_agent", "goodbye"}
IDENTITY = {"account_number", "pin", "date_of_birth"}
PART_CONFIDENCE = 0.6  # how sure each part of a turn joining two requests must be
FOLLOW_UP_CONTEXT = 300  # characters of earlier questions a follow-up is read with
# A question this close (cosine, alone) to a sentence of the section just read out is about
# that section: 0.44-0.64 for follow-ups it answers, 0.16-0.39 for new questions it does
# not ("can they fix a cracked screen?" after the shops' hours), on calls of the QA rounds.
FOLLOW_UP_RELATED = 0.40
FOLLOW_UP_MARGIN = 0.10  # how much closer another section must be to answer instead
# A follow-up's own reading this close to a section answers it: "What will it cost me to
# use my phone there?" names the States earlier in the same turn (0.85), where "what about
# for broadband?" (0.56) is about the notice asked of just before.
SELF_CONTAINED = 0.75
QUESTION_WORDS = 4  # words a doubted question needs to count as heard ("what?" does not)
CUSTOMER_FIELDS = frozenset(f.name for f in fields(Customer))  # what a CRM record can keep
CARD_ONLY = RedactionPolicy.only("card_number")  # a card read out, for the dialogue to refuse
CARD_WORDS = re.compile(r"(?<!sim )\bcard\b|\bexpir|\b(?:visa|mastercard|amex)\b|\bcv[cv]\b",
                        re.I)
# What a caller says of each service, and the names an outage record gives it.
SERVICE_CUES = {
    "broadband": re.compile(r"\b(?:broadband|internet|wi-?fi|router|fibre|fiber|modem|"
                            r"online)\b", re.I),
    "mobile": re.compile(r"\b(?:signal|mobile data|4g|5g|calls? (?:drop|fail)|can'?t (?:make|"
                         r"get) calls|no service|bars)\b", re.I),
    "tv": re.compile(r"\b(?:tv|telly|television|channels?|set-?top box)\b", re.I),
}
SERVICE_WORDS = {"broadband": {"broadband", "internet", "fibre"},
                 "mobile": {"mobile", "mobile network", "network", "4g", "5g"},
                 "tv": {"tv", "television"}}
OPEN_STATUSES = frozenset({"open", "in_progress", "investigating"})  # a follow-up still ahead


@dataclass(frozen=True)
class Policy:
    """Thresholds an operator tunes; defaults are conservative."""

    min_confidence: float = 0.35  # below this an intent is a misunderstanding
    switch_confidence: float = 0.6  # a new request mid-flow must be this sure
    sure_request: float = 0.8  # a question this sure of its request starts it unanswered
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


_UNASKED = object()  # a turn's knowledge answer before anything asked for it


@dataclass
class _Turn:
    """One caller turn as heard: ``recognised`` is the recogniser's intent ("" for the
    keypad), ``intent`` the one the turn serves (the flow's, when it answered the flow's
    question), ``progress`` whether it answered the question asked."""

    text: str
    dtmf: str
    recognised: str
    confidence: float
    found: dict[str, str] = field(default_factory=dict)
    intent: str = ""
    progress: bool = False
    context: str = ""  # the question the knowledge base answered just before
    heard_before: str = ""  # the assistant's reply the turn before, as the caller heard it
    answered_from: str = ""  # the knowledge section that reply came from, if any
    card: bool = False  # the caller read out card details: nothing is taken from them
    after: str | None = None  # the flow the turn before finished, if any
    asked: str = ""  # the question as the knowledge base last read it, context and all
    answer: Any = field(default=_UNASKED, repr=False)  # the knowledge base's answer, once asked


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
        self._ticket_words = {
            kind: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in spec["called"])
                             + r")s?\b", re.I)
            for kind, spec in domain.work_orders.items() if spec.get("called")}

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
            return self._outcome(state, "", None, [], None)
        offered, state.offered_handoff = state.offered_handoff, False  # an offer lives one turn
        proposed, state.offered_flow = state.offered_flow, None
        said: list[str] = []
        before_tickets = len(state.tickets)
        turn = self._hear(state, text, dtmf)
        done, state.just_done = state.just_done, None
        turn.after = done
        # a question after an answer or a finished request is read with what it follows
        # ("so do I still need to pay that bit?" after a charge was disputed)
        turn.context = state.asked_before or (state.told if done else "")
        turn.heard_before = next((t for s, t in reversed(state.transcript[:-1]) if s == "agent"),
                                 "")
        turn.answered_from = state.answered_from if state.asked_before else ""
        state.asked_before = state.answered_from = ""
        if (turn.recognised and turn.recognised == done and not turn.progress
                and turn.confidence < self.policy.min_confidence
                and not (offers.asks_a_question(turn.text) and self._look_up(turn))):
            # "so when will it be back up?" (but "should I restart my router meanwhile?"
            # is for the knowledge base)
            turn.confidence = self.policy.min_confidence
        source = self._respond(state, turn, said, offered, proposed)
        if source and turn.asked:
            state.asked_before = turn.asked[-FOLLOW_UP_CONTEXT:]
            state.answered_from = source
        if source:  # the plan the question named, or the only one the answer names
            named = [p["name"] for p in self.domain.plans if p["name"] in " ".join(said)]
            state.mentioned_plan = turn.found.get("plan_name") or (
                named[0] if len(named) == 1 else self._most(turn.text, named)
                or state.mentioned_plan)
        if not said and not (state.ended or state.handoff):
            said.append(self._question(state))  # a caller is never left in silence
        if source:
            state.knowledge_sources.append(source)
        reply = self._scrub(state, " ".join(said))
        state.transcript.append(("agent", reply))
        state.told = reply if state.just_done else ""
        return self._outcome(state, reply, turn, state.tickets[before_tickets:], source)

    def _hear(self, state: DialogueState, text: str, dtmf: str) -> _Turn:
        """What the turn holds: the recogniser's intent, the slot values, and whether it
        answered the question asked (then it serves the flow that asked, whatever the
        recogniser made of a bare "2468")."""
        if dtmf:
            state.transcript.append(("caller", f"[keypad {mask_digits(dtmf)}]"))
            turn = _Turn("", dtmf, "", 1.0, self.extractor.from_dtmf(dtmf, state.pending),
                         state.flow or "")
        else:
            card = _card_number(text)
            state.transcript.append(("caller", mask_digits(text) if card else text))
            last_agent = next((t for s, t in reversed(state.transcript) if s == "agent"), "")
            understanding = self.recognize(text, last_agent)
            turn = _Turn(text, "", understanding.intent, understanding.confidence,
                         {} if card else self._drop_misreadings(
                             self.extractor.extract(text, state.pending), text),
                         understanding.intent, card=card)
            state.anger += len(phrases.ANGER.findall(text))
            if turn.intent == "goodbye" and not offers.says_goodbye(text):
                turn.confidence = 0.0  # "what?", "uh": never a reason to hang up
        if "ticket_id" not in turn.found and state.tickets and turn.intent == "ticket_status" \
                and (named := self._ticket_named(state, text)) is not None:
            # "when will I hear back about the complaint?" after a dispute and a complaint
            turn.found["ticket_id"] = state.slots["ticket_id"] = named.id
        if "ticket_id" not in turn.found and state.tickets and (
                phrases.THAT_TICKET.search(text) or turn.intent == "ticket_status"
                and phrases.THAT_ONE.search(text)):
            # "the ticket you just opened", "what's the status on that one?"
            turn.found["ticket_id"] = state.tickets[-1].id
            state.slots["ticket_id"] = turn.found["ticket_id"]
        if ("ticket_id" in turn.found and turn.confidence < self.policy.min_confidence
                and "ticket_id" not in self._flow_slots(turn.intent)
                and "ticket_status" in self.domain.flows):
            turn.intent = "ticket_status"  # "can you confirm reference one is booked?"
        if (not dtmf and turn.intent in {"knowledge_question", "check_balance"}
                and "check_balance" in self.domain.flows and phrases.WHEN_DUE.search(text)):
            turn.intent = "check_balance"  # the caller's own due date, not the billing policy
            turn.confidence = max(turn.confidence, self.policy.switch_confidence)
        if (state.mentioned_plan and not dtmf and "plan_name" not in turn.found
                and "change_plan" in self.domain.flows and phrases.TAKE_IT.search(text)):
            # "yeah, I'll take that, upgrade me please" after the plan's price was told
            turn.found["plan_name"] = state.slots["plan_name"] = state.mentioned_plan
            turn.intent = "change_plan"
            turn.confidence = max(turn.confidence, self.policy.switch_confidence)
        turn.progress = bool(state.pending and state.pending in turn.found)
        if (state.flow and not turn.progress and not dtmf
                and (turn.found.keys() - IDENTITY) & self._flow_slots(state.flow)
                and (phrases.CORRECTS.search(text)
                     or turn.confidence < self.policy.min_confidence)):
            turn.progress = True  # "no sorry, Thursday not Tuesday" while the time is asked
        if turn.progress and state.flow:
            turn.intent = state.flow  # the turn answered the assistant's question
        if not dtmf and not _only_identity(text):
            state.intents.append(turn.intent)
        state.slots.update(turn.found)
        if state.flow and self._note_change(state, turn):
            turn.intent, turn.progress = state.flow, True  # "my phone number, actually"
        return turn

    def _respond(self, state: DialogueState, turn: _Turn, said: list[str],
                 offered: bool, proposed: str | None = None) -> str | None:
        """Decide the turn, most pressing first: a person wanted, the offer just made,
        identity given, the flow's question answered, then a new request. Returns the
        knowledge source the reply came from, if any."""
        if state.anger >= self.policy.anger_handoff:
            source = None
            if self._complaint_to_record(state, turn):  # recorded first, then a person
                self._start_flow(state, "complaint")
                source = self._run(state, said, turn)
            self._handoff(state, said, "caller is upset")
            return source
        elif self._wants_person(turn, state.pending is not None):
            self._handoff(state, said, "caller asked for a person")
        elif turn.card:  # card payments go through the secure line, never the conversation
            said.append(self.domain.prompts.get(
                "card_details", "For your security, please don't read out card details."))
            if state.pending:
                said.append(state.question)
        elif (offered or proposed) and offers.closes_with_no(turn.text) and \
                "goodbye" in self.domain.flows:
            self._start_flow(state, "goodbye")  # "okay, no, that's all"
            return self._run(state, said, turn)
        elif offered and offers.is_consent(turn.text):
            self._handoff(state, said, "no answer in the knowledge base")
        elif (offered or proposed) and offers.declines(turn.text) and not (
                self._a_request(turn) and turn.intent != proposed
                and turn.confidence >= self.policy.switch_confidence):
            # "no thanks" (but "no, don't worry. What's my balance though?" asks anew)
            said.append(self.domain.prompts.get(
                "offer_declined", "No problem. Is there anything else I can help you with?"))
        elif proposed and (offers.is_consent(turn.text) or turn.found.keys() & IDENTITY
                           and (turn.dtmf or _only_identity(turn.text))):
            # "yes please" to "shall I go ahead?", or the account and PIN it will need
            turn.intent = proposed
            self._start_flow(state, proposed)
            return self._run(state, said, turn)
        elif state.tickets and not turn.dtmf and not state.pending and \
                phrases.WHICH_REFERENCE.search(turn.text) and \
                turn.found.get("ticket_id", state.tickets[-1].id) == state.tickets[-1].id:
            # "sorry, what was that reference again?": the one this call just gave
            said.append(self.domain.prompts.get("reference", "Your reference is {ticket}.")
                        .format(ticket=state.tickets[-1].id))
            state.just_done, state.asked_before = turn.after, turn.context  # topic kept
        elif not turn.dtmf and phrases.REPEAT.search(turn.text) and not turn.found and \
                (last := next((t for s, t in reversed(state.transcript[:-1]) if s == "agent"),
                              "")):
            said.append(last)  # "sorry, what was that?": said again, nothing else changes
            if offered:
                state.offered_handoff = True
            state.offered_flow = proposed
        elif state.flow and not turn.dtmf and phrases.CALL_OFF.search(turn.text):
            # "no wait, don't cancel", "forget it": the request is dropped, nothing done
            state.flow = state.pending = None
            state.queued = []
            if offers.says_goodbye(turn.text) and "goodbye" in self.domain.flows:
                self._start_flow(state, "goodbye")  # "forget it, bye"
                return self._run(state, said, turn)
            answer = self._look_up(turn) if offers.asks_a_question(turn.text) else None
            if answer is not None:  # "don't cancel anything yet. What would leaving cost?"
                said.append(self.domain.prompts.get(
                    "request_stopped", "No problem, I won't go ahead with that."))
                said.append(answer.text)
                return answer.source
            said.append(self.domain.prompts.get(
                "request_dropped", "No problem, I won't go ahead with that. Is there anything "
                "else I can help you with?"))
        elif (withdrawn := self._taken_back(state, turn)) is not None:
            # "hang on, I've changed my mind, don't cancel it": the request just made undone
            state.flow_ticket = self.crm.update_ticket(withdrawn.id, status="withdrawn")
            state.tickets = [state.flow_ticket if t.id == withdrawn.id else t
                             for t in state.tickets]
            said.append(self.domain.prompts.get(
                "request_withdrawn", "No problem, I've withdrawn request {ticket}.").format(
                ticket=withdrawn.id))
            answer = self._look_up(turn) if offers.asks_a_question(turn.text) else None
            said.append(answer.text if answer else self.domain.prompts.get(
                "offer_declined", "Is there anything else I can help you with?"))
            return answer.source if answer else None
        elif (amended := self._amends(state, turn)) is not None:
            # "no sorry, I meant Thursday, not Tuesday" just after the booking: done again
            # with the value put right, on the same ticket
            ticket, turn.intent = state.flow_ticket, amended
            self._start_flow(state, amended)
            state.amending = ticket
            return self._run(state, said, turn)
        elif not state.verified and not turn.dtmf and turn.found.keys() & IDENTITY and \
                phrases.FOR_SOMEONE_ELSE.search(turn.text):
            # "my husband owes, his account number is 40022345", "I've got his PIN though":
            # an account is discussed with its holder only, whoever knows its PIN
            for slot in IDENTITY:
                state.slots.pop(slot, None)
            state.flow = state.pending = None
            state.queued = []
            said.append(self._someone_else())
        elif self._pin_forgotten(state, turn):
            said.append(self.domain.prompts.get("pin_forgotten", "No problem."))
            self._ask(state, said, "date_of_birth")
        elif not self._identity_settled(state, turn, said):
            pass  # verification asked for more, or the turn only identified the caller
        elif turn.progress and state.flow:
            state.misunderstandings = 0
            return self._run(state, said, turn)
        elif turn.intent == "goodbye" and turn.confidence >= self.policy.switch_confidence:
            self._start_flow(state, turn.intent)
            return self._run(state, said, turn)
        elif self._side_question(state, turn):
            answer = self._look_up(turn)
            assert answer is not None  # _side_question made sure
            said.append(answer.text)
            said.append(state.question)  # then the question still waiting for its answer
            return answer.source
        elif not turn.dtmf and not turn.found and (
                phrases.ACKNOWLEDGES.match(turn.text)
                or state.pending and phrases.WHAT_NEEDED.search(turn.text)):
            # "Okay." after an answer; "what else do you need from me?" while asked
            said.append(state.question if state.pending else self.domain.prompts.get(
                "anything_else", "Is there anything else I can help you with?"))
        elif self._answerable(state, turn):
            state.misunderstandings = 0
            turn.intent = "knowledge_question"  # what the turn served; ``recognised`` stays
            self._start_flow(state, turn.intent)
            return self._run(state, said, turn)
        elif self._unclear(state, turn.intent, turn.confidence, turn.found):
            self._misunderstood(state, said)
        elif state.pending and turn.intent == state.flow:
            self._unanswered(state, said)  # the same request again, without the answer
        elif state.verified and turn.intent and self._about_someone_else(turn):
            said.append(self._someone_else())
        elif turn.intent and self._answer_first(state, turn):
            answer = self._look_up(turn)
            assert answer is not None  # _answer_first made sure
            said.append(answer.text)
            if self._done_already(state, turn.intent):
                said.append(self.domain.prompts.get(
                    "anything_else", "Is there anything else I can help you with?"))
                return answer.source  # done already this call: nothing to offer again
            said.append(self.domain.intents[turn.intent].offer or self.domain.prompts.get(
                "offer_action", "Would you like me to go ahead with that?"))
            state.offered_flow = turn.intent
            return answer.source
        elif turn.intent:  # a keypad entry that fits nothing starts no flow
            state.misunderstandings = 0
            state.queued = self._also_asked(turn)
            state.intents.extend(state.queued)
            if turn.intent != state.flow or state.pending is None:
                self._start_flow(state, turn.intent)
            return self._run(state, said, turn)
        return None

    def _complaint_to_record(self, state: DialogueState, turn: _Turn) -> bool:
        """An upset caller making a complaint: it is recorded before the transfer, so the
        formal complaint asked for exists whatever the colleague does next."""
        return (turn.intent == "complaint" and turn.confidence >= self.policy.min_confidence
                and "complaint" in self.domain.flows
                and not any(t.type == "complaint" for t in state.tickets))

    def _also_asked(self, turn: _Turn) -> list[str]:
        """Further requests in one turn ("my balance and also how much data I've used"):
        each part the turn joins with "and" is read alone, and a part that is surely
        another request that only tells something (no change, no ticket) is answered
        after the first. A request that would act is never taken from a part."""
        if turn.dtmf or not phrases.ALSO.search(turn.text):
            return []
        found: list[str] = []
        for part in phrases.ALSO.split(turn.text):
            if len(part.split()) < 2:
                continue
            heard = self.recognize(part, "")
            if (heard.confidence >= PART_CONFIDENCE and heard.intent != turn.intent
                    and heard.intent not in found and self._only_tells(heard.intent)):
                found.append(heard.intent)
        return found

    def _only_tells(self, intent: str) -> bool:
        """A flow that looks things up and says them, and changes nothing. Not a flow that
        only speaks (out of scope: "I've bought a holiday cottage and I need a new line")
        or answers from the knowledge base, which would be asked with a later turn's words
        ("Account 40044567, PIN 3390" answered with the identity checks)."""
        kinds = {kind for kind, _ in _steps(self.domain.flows.get(intent, []))}
        return "lookup" in kinds and kinds <= {"verify", "lookup", "say", "ask"}

    def _side_question(self, state: DialogueState, turn: _Turn) -> bool:
        """A question the knowledge base answers, asked while the assistant waits for an
        answer of its own ("before I find my PIN, what time does phone support close?"):
        answered, and the waiting question asked again, not "I didn't catch that"."""
        if (state.pending is None or turn.dtmf or self.knowledge is None
                or turn.found.keys() & (IDENTITY | {state.pending})
                or not offers.asks_a_question(turn.text)):
            return False  # (a plan it names is no answer to "your PIN?")
        aside = (turn.intent in ("knowledge_question", "out_of_scope")
                 or turn.confidence < self.policy.min_confidence)
        return aside and self._look_up(turn) is not None

    def _answer_first(self, state: DialogueState, turn: _Turn) -> bool:
        """A question about what something costs or how it works, recognised as a request
        ("what would it cost to upgrade to Unlimited 5G?", "what other ways can I pay
        you?", "can she be at home for the engineer?"): answered from the knowledge base
        and the request offered, not started. Only when the pack answers it; "switch me to
        Unlimited 5G", "can I pay my bill?" and "how much do I owe?" go to their flows as
        before, and so does a question the recogniser is sure is a request. A question
        is answered first only for an intent the pack gives an ``offer`` (a price, also
        for any request that acts): "is there a problem with broadband in Oxford?" is
        what the outage flow itself answers."""
        if (turn.dtmf or state.pending is not None or turn.intent == state.flow
                or self.knowledge is None or turn.intent in ALWAYS_SWITCH):
            return False
        acts = any(kind in ("update", "create_ticket")
                   for kind, _ in _steps(self.domain.flows.get(turn.intent, [])))
        intent = self.domain.intents.get(turn.intent)
        offered = bool(intent and intent.offer)  # the pack offers it after an answer
        priced = (acts or offered) and prices.asks_a_price(turn.text) and (
            offers.asks_a_question(turn.text) or prices.HOW_MUCH.search(turn.text) is not None)
        # a question is never taken for a request that acts ("will I keep the same
        # number?" after a new SIM opened no number transfer), however sure the recogniser
        # ... but one that says what it wants done ("can an engineer come on Thursday
        # afternoon?") is that request
        specific = bool((turn.found.keys() - IDENTITY) & self._flow_slots(turn.intent)) and \
            not phrases.asks_what_or_how(turn.text)
        asked = phrases.asks_how_things_are(turn.text, requests_count=acts)
        wanted = priced or (offered and not specific and asked and (
            acts or turn.confidence < self.policy.sure_request))
        # not a question about an account the turn names ("my son's on 40027788, how much
        # data has he used?"): that is the account's own check
        return wanted and not turn.found.keys() & IDENTITY and self._look_up(turn) is not None

    def _pin_forgotten(self, state: DialogueState, turn: _Turn) -> bool:
        """Asked for the PIN, the caller does not know it ("I forgot my PIN"), or gives the
        account number saying so: the date of birth proves identity as well, so it is asked
        for instead of the PIN."""
        if state.verified or turn.dtmf or "date_of_birth" not in self.domain.slots or \
                turn.found.keys() & {"pin", "date_of_birth"} or \
                phrases.FORGOTTEN.search(turn.text) is None:
            return False
        if state.pending == "pin":
            return "account_number" not in turn.found
        # "the account is 40019012, but I've forgotten my PIN"
        return "account_number" in turn.found and re.search(r"\bpin\b", turn.text, re.I) is not None

    def _wants_person(self, turn: _Turn, pending: bool = False) -> bool:
        """A clear request for a person wins over any flow: the words themselves, or the
        recogniser sure of it (surer when the turn also answered the question asked:
        "It's 40031122, but actually can I talk to a real person?")."""
        if turn.dtmf:
            return False
        if offers.asks_for_person(turn.text):
            return True
        needed = self.policy.switch_confidence if turn.progress or pending \
            else self.policy.min_confidence  # "just read it off your system" is no such request
        return turn.recognised == "speak_to_agent" and turn.confidence >= needed

    def _identity_settled(self, state: DialogueState, turn: _Turn, said: list[str]) -> bool:
        """Identity volunteered at any point ("it's 40011234, pin 4821") is checked now.

        False when the turn is answered here: verification asked for more (a PIN after an
        account number keyed in before anything was said) or failed, or the turn only
        identified the caller and no request is open ("How can I help you today?").
        """
        other = turn.found.get("account_number")
        if state.verified and state.customer and other and \
                other != state.customer.account_number:
            # another account ("what's the balance on 40034444?"): its own check first,
            # never the verified caller's figures read as if they were that account's
            state.verified, state.customer = False, None
            for slot in ("pin", "date_of_birth"):
                if slot not in turn.found:
                    state.slots.pop(slot, None)
        if not turn.found.keys() & IDENTITY or state.verified:
            return True
        only_identity = bool(turn.dtmf) or _only_identity(turn.text)
        if not self._can_verify(state) and state.flow is not None and only_identity \
                and state.pending in IDENTITY and state.pending not in turn.found:
            # "the account number is 40044567" while its PIN is asked (the caller ID gave
            # the account): heard, and the question still stands
            said.append(state.question)
            return False
        if not (self._can_verify(state) or (state.flow is None and only_identity)):
            return True
        if not self._verify(state, said):
            if state.flow is None and not only_identity and self._a_request(turn):
                pending, question = state.pending, state.question
                self._start_flow(state, turn.intent)  # "I want my data usage, PIN 1234":
                state.pending, state.question = pending, question  # kept for the right PIN
            return False
        turn.progress = True
        if state.flow is None and only_identity:
            said.append("How can I help you today?")
            return False
        return True

    def _someone_else(self) -> str:
        return self.domain.prompts.get(
            "someone_else", "I can only discuss an account with its holder. They're "
            "welcome to call us themselves. Is there anything else I can help you with?")

    def _about_someone_else(self, turn: _Turn) -> bool:
        """A verified caller asking to read someone else's account ("what does my sister
        owe on hers?"): their own figures are not read out as if they were the other's.
        (Before verification, a caller who gives an account's identity as someone else's
        is refused too: ``FOR_SOMEONE_ELSE``.)"""
        steps = _steps(self.domain.flows.get(turn.intent, []))
        reads = any(kind == "lookup" for kind, _ in steps) and not any(
            kind in ("update", "create_ticket") for kind, _ in steps)
        return reads and not turn.dtmf and phrases.SOMEONE_ELSE.search(turn.text) is not None

    def _amends(self, state: DialogueState, turn: _Turn) -> str | None:
        """The request finished last turn, when this turn puts one of its values right:
        a value its flow asks for, said as a correction."""
        if state.flow or turn.dtmf or not turn.after or not phrases.CORRECTS.search(turn.text):
            return None
        steps = _steps(self.domain.flows.get(turn.after, []))
        if not any(kind in ("update", "create_ticket") for kind, _ in steps):
            return None
        return turn.after if (turn.found.keys() - IDENTITY) & self._flow_slots(
            turn.after) else None

    def _taken_back(self, state: DialogueState, turn: _Turn) -> Ticket | None:
        """The ticket the request finished last turn opened, when the caller now takes the
        request back in so many words ("I've changed my mind, don't cancel it")."""
        if state.flow or turn.dtmf or not turn.after or not phrases.TAKEN_BACK.search(turn.text):
            return None
        ticket = state.flow_ticket  # the finished flow's, until the next flow starts
        return ticket if ticket is not None and ticket.status != "withdrawn" else None

    def _a_request(self, turn: _Turn) -> bool:
        """The turn asks for something a flow does (not a goodbye or a question)."""
        return (turn.intent in self.domain.flows and turn.confidence >= self.policy.min_confidence
                and turn.intent not in ALWAYS_SWITCH | {"out_of_scope", "knowledge_question"})

    def _drop_misreadings(self, found: dict[str, str], text: str = "") -> dict[str, str]:
        """Values a slot took from words meant for another: a date of birth is not also the
        day of a visit, a phone number is never an address, and neither is a name of no
        place the operator serves ("Banana.", "any good pizza places around Oxford?")."""
        specs = self.extractor.specs
        secret_dates = {v for k, v in found.items()
                        if k in specs and specs[k].type == "date" and specs[k].sensitive}
        kept = {}
        for slot, value in found.items():
            spec = specs.get(slot)
            if spec is not None and spec.type == "date" and not spec.sensitive \
                    and value in secret_dates:
                continue
            if spec is not None and spec.type == "address" and (
                    contact.looks_like_phone_number(value) or not self._a_place(value, text)):
                continue
            kept[slot] = value
        return kept

    def _served_area(self, text: str, areas: Sequence[str] | None = None) -> str:
        """The first town the operator serves (``areas``, else the CRM's) that the words
        name, or ""."""
        return next((area for area in (self.crm.service_areas() if areas is None else areas)
                     if re.search(rf"\b{re.escape(area)}\b", text, re.I)), "")

    def _area_said(self, state: DialogueState) -> str:
        """The town the caller named last in this call, or ""."""
        areas = self.crm.service_areas()  # asked of the CRM once, not once a line
        return next((area for s, t in reversed(state.transcript)
                     if s == "caller" and (area := self._served_area(t, areas))), "")

    def _a_place(self, address: str, text: str) -> bool:
        """An address with a house number or a street, or, said as a statement, a town the
        operator serves (any name, when the CRM lists none)."""
        if re.search(r"\d", address) or names_a_street(address):
            return True
        areas = self.crm.service_areas()
        return not areas or bool(self._served_area(address, areas)) and \
            not offers.asks_a_question(text)

    def _answerable(self, state: DialogueState, turn: _Turn) -> bool:
        """A question the recogniser is too unsure of to act on, or calls off-topic, that
        the knowledge base answers ("Is Mexico in your travel zone?"): answered from the
        pack, rather than met with "I didn't catch that" or a refusal. Not while a question
        of the assistant's waits for its answer, not for keypad digits, and not when the
        turn carries a value its intent's flow asks for (an unsure "switch me to
        Unlimited 5G" is still a plan change).

        So is a turn it doubts is a knowledge question ("If I leave my broadband before
        the year's up, what would I have to pay?" at 0.18). A question it only half thinks
        off-topic or a knowledge question ("Do you offer travel insurance for my
        holiday?") goes there even when the pack has no answer: the caller was heard, so
        the reply is "I'd rather not guess" and a colleague, not "I didn't catch that". A
        question it is sure is off-topic still gets the refusal."""
        if (turn.dtmf or self.knowledge is None or state.pending is not None
                or "knowledge_question" not in self.domain.flows):
            return False
        doubted = turn.confidence < self.policy.min_confidence
        if turn.intent == "knowledge_question" and not doubted:
            return False  # its own flow answers it
        unsure = turn.intent == "out_of_scope" or self._unclear(state, turn.intent,
                                                                 turn.confidence, turn.found)
        if not unsure:
            return False
        if self._look_up(turn) is not None:
            return True
        # A question heard in full, whatever the recogniser doubts, was heard: "I'd rather
        # not guess" and a colleague, not "I didn't catch that".
        if not doubted:
            return False
        if turn.intent in ("out_of_scope", "knowledge_question"):
            return offers.asks_a_question(turn.text)
        return "?" in turn.text and len(turn.text.split()) >= QUESTION_WORDS and not turn.found

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
        if intent == "out_of_scope" or intent == "speak_to_agent" and \
                confidence < self.policy.switch_confidence:
            return True  # "just read it off your system" is not asking for a person
        return bool(state.flow and intent != state.flow and intent not in ALWAYS_SWITCH
                    and confidence < self.policy.switch_confidence)

    def _can_verify(self, state: DialogueState) -> bool:
        has_account = state.customer is not None or "account_number" in state.slots
        return has_account and bool(state.slots.keys() & {"pin", "date_of_birth"})

    def _outcome(self, state: DialogueState, reply: str, turn: _Turn | None,
                 tickets: list[Ticket], source: str | None) -> TurnOutcome:
        return TurnOutcome(reply=reply, intent=turn.intent if turn else "",
                           confidence=turn.confidence if turn else 0.0,
                           slots=dict(turn.found) if turn else {},
                           verified=state.verified, handoff=state.handoff,
                           tickets=tuple(tickets), knowledge_source=source,
                           end_call=state.ended or state.handoff,
                           recognised_intent=turn.recognised if turn else "")

    # ---- flows -------------------------------------------------------------------
    def _start_flow(self, state: DialogueState, intent: str) -> None:
        state.flow, state.step, state.pending = intent, 0, None
        state.flow_ticket = None
        for key in ("ticket", "ticket_private", "outage", "plan", "changing"):
            state.facts.pop(key, None)
        keep = {"account_number", "pin", "date_of_birth", "phone_number"}
        state.slots = {k: v for k, v in state.slots.items()
                       if k in keep or k in self._flow_slots(intent)}

    def _most(self, question: str, named: list[str]) -> str | None:
        """Of the plans an answer named, the one a question for the cheapest (or the
        fastest, the biggest: the dearest) asked for; None for any other question."""
        m = phrases.SUPERLATIVE.search(question)
        prices = {p["name"]: float(p.get("price") or 0) for p in self.domain.plans}
        if m is None or not named:
            return None
        cheap = m.group().lower() in phrases.SUPERLATIVE_LOW
        return (min if cheap else max)(named, key=lambda name: prices.get(name, 0.0))

    def _done_already(self, state: DialogueState, intent: str) -> bool:
        """The request was served in this call: its flow ran, or another flow opened the
        ticket it would open (a stolen phone's block orders the replacement SIM)."""
        kinds = {arg.get("type") for kind, arg in _steps(self.domain.flows.get(intent, []))
                 if kind == "create_ticket"}
        return intent in state.completed_flows or any(t.type in kinds for t in state.tickets)

    def _flow_slots(self, intent: str) -> set[str]:
        wanted = set()
        for kind, arg in _steps(self.domain.flows.get(intent, [])):
            if kind == "ask":
                wanted.add(arg["slot"] if isinstance(arg, dict) else arg)
            if kind == "create_ticket":
                wanted.update(arg.get("fields", []))
            if kind == "update" and arg.get("slot"):
                wanted.add(arg["slot"])
        return wanted

    def _run(self, state: DialogueState, said: list[str], turn: _Turn) -> str | None:
        """Run steps until one waits for the caller or the flow ends."""
        self._note_change(state, turn)
        steps = _steps(self.domain.flows.get(state.flow or "", []))
        source = None
        while state.step < len(steps):
            kind, arg = steps[state.step]
            if not self._applies(state, kind, arg):
                pass
            elif kind == "verify":
                if not self._verify(state, said):
                    return source
            elif kind == "ask":
                if not self._ask_step(state, said, arg):
                    return source
            elif kind == "lookup":
                self._lookup(state, arg)
            elif kind == "create_ticket":
                self._create_ticket(state, arg)
            elif kind == "update":
                if not self._update(state, said, arg):
                    state.flow = state.pending = None  # not done: a person was offered
                    return source
            elif kind == "say":
                said.append(self._say(state, arg))
            elif kind == "knowledge":
                source = self._knowledge(state, said, turn)
                if source is None:  # not known: a colleague offered, the request not resolved
                    state.flow = state.pending = None
                    return None
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
        state.just_done = state.flow
        state.flow = None
        if state.queued and not (state.ended or state.handoff):
            self._start_flow(state, state.queued.pop(0))  # "... and also my data usage"
            return self._run(state, said, turn) or source
        return source

    def _applies(self, state: DialogueState, kind: str, arg: Any) -> bool:
        """A step's guard: ``if: FACT`` runs it only when FACT holds, ``unless: FACT`` only
        when it does not (a ``say``'s ``if`` picks its words instead)."""
        if kind == "say" or not isinstance(arg, dict):
            return True
        if "if" in arg and not self._fact(state, arg["if"]):
            return False
        return not ("unless" in arg and self._fact(state, arg["unless"]))

    def _fact(self, state: DialogueState, name: str) -> bool:
        """``verified``, or a fact by its dotted path (``usage.unlimited``)."""
        if name == "verified":
            return state.verified
        value: Any = state.facts
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return bool(value)

    def _ask_step(self, state: DialogueState, said: list[str], arg: Any) -> bool:
        """True once the slot holds a value the flow can use; otherwise asks (again)."""
        options = arg if isinstance(arg, dict) else {"slot": arg}
        slot = options["slot"]
        problem = self._unusable(state, slot, options.get("days") or ())
        if problem is not None:
            state.slots.pop(slot, None)
            said.append(problem)
        if slot in state.slots:
            return True
        self._ask(state, said, slot, options.get("prompt"))
        return False

    def _unusable(self, state: DialogueState, slot: str, days: Sequence[str]) -> str | None:
        """Why the date in ``slot`` cannot be booked, in words, or None when it can (or the
        slot holds no date): a day that has passed, or one the operator does not work."""
        spec, value = self.domain.slots.get(slot), state.slots.get(slot)
        if spec is None or spec.type != "date" or spec.sensitive or value is None:
            return None
        day = dates.parse_iso(value)
        why = dates.unbookable(day, self._today(), days) if day else None
        if why == "passed":
            return self.domain.prompts.get("date_passed", "That day has already passed.")
        if why == "closed" and day is not None:
            return self.domain.prompts.get(
                "day_not_worked", "We can't book a {weekday}; we work {days}.").format(
                weekday=f"{day:%A}", days=dates.spoken_days(days))
        return None

    def _today(self) -> dt.date:
        """The extractor's today, so "next Tuesday" and the checks on it agree."""
        return self.extractor.today or dt.date.today()

    def _ask(self, state: DialogueState, said: list[str], slot: str,
             prompt: str | None = None) -> None:
        """Ask for ``slot``, in the words of prompts.yaml's ``prompt`` when a flow words
        the question its own way ("What is the new phone number?")."""
        state.pending = slot
        state.question = self.domain.prompts.get(prompt or "", self.domain.slots[slot].prompt)
        said.append(state.question)

    def _question(self, state: DialogueState) -> str:
        """The question waiting for an answer, or an open one."""
        return state.question if state.pending else "How can I help you today?"

    def _note_change(self, state: DialogueState, turn: _Turn) -> bool:
        """For a flow that can change several contact details, which one is changing (fact
        ``changing``). A changed mind runs the flow again from the top (a verified caller is
        not asked again) and drops the words the address question took for an address."""
        options = self._contact_fields(state.flow or "")
        if len(options) < 2:
            return False
        before = next(iter(state.facts.get("changing") or {}), None)
        now = contact.detail_changing(turn.text, turn.found, before, options)
        if now == before:
            return False
        state.facts["changing"] = {now: True}
        if now != "address" and "address" in turn.found:
            del turn.found["address"]  # "My phone number" is not an address
            state.slots.pop("address", None)
        state.step = 0
        return True

    def _contact_fields(self, flow: str) -> set[str]:
        """The contact details a flow's ``update`` steps can change."""
        return {arg["field"] for kind, arg in _steps(self.domain.flows.get(flow, []))
                if kind == "update"} & set(contact.DETAILS)

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
            allowance = customer.data_allowance_gb
            used = f"{customer.data_used_gb:g}"
            state.facts["usage"] = {
                "data_used_gb": used, "unlimited": allowance is None,
                "used": f"{used} gigabyte{'' if used == '1' else 's'}",
                "data_allowance": "unlimited" if allowance is None else f"{allowance:g} gigabyte"}
        elif what == "outage":
            where = customer.area if customer else state.slots.get("address", "")
            if where and not customer and not self._served_area(where):
                where = f"{where}, {self._area_said(state)}"  # "broadband in Oxford" earlier
            outages = self.crm.outages_for(where) if where else []
            service = _service_named(" ".join(t for s, t in state.transcript if s == "caller"))
            if service:  # a dead router is not explained by a mobile outage in the area
                outages = [o for o in outages if o.service.lower() in SERVICE_WORDS[service]]
            state.facts["outage"] = vars(outages[0]) if outages else None
        elif what == "ticket":
            ticket = self.crm.ticket(state.slots.get("ticket_id", ""))
            private = ticket is not None and not self._may_see(state, ticket)
            state.facts["ticket_private"] = private
            state.facts["ticket"] = self._ticket_facts(ticket) if ticket and not private else None
        elif what == "customer_tickets" and customer:
            state.facts["customer_tickets"] = [self._ticket_facts(t) for t in
                                               self.crm.tickets_for(customer.account_number)]

    def _ticket_named(self, state: DialogueState, text: str) -> Ticket | None:
        """The latest ticket of this call whose kind the caller names ("the complaint")."""
        return next((t for t in reversed(state.tickets)
                     if (called := self._ticket_words.get(t.type)) and called.search(text)), None)

    def _ticket_facts(self, ticket: Ticket) -> dict[str, Any]:
        """What a reply may say of a ticket; an open one's ``follow_up`` (work_orders.yaml)
        says what happens next, with the ticket's own fields filled in."""
        follow_up = ""
        template = self.domain.work_orders.get(ticket.type, {}).get("follow_up")
        if template and ticket.status in OPEN_STATUSES:
            with contextlib.suppress(KeyError, IndexError, ValueError):
                follow_up = str(template).format(**ticket.fields)
        return {"id": ticket.id, "type": ticket.type, "status": ticket.status.replace("_", " "),
                "priority": ticket.priority, "type_words": ticket.type.replace("_", " "),
                "follow_up": follow_up}

    @staticmethod
    def _may_see(state: DialogueState, ticket: Ticket) -> bool:
        """A ticket on an account is told only to a caller verified as that account, or to
        the caller who opened it in this call; one on no account (a new connection's) is
        anyone's to ask after."""
        if ticket.account_number is None or any(t.id == ticket.id for t in state.tickets):
            return True
        return bool(state.verified and state.customer
                    and state.customer.account_number == ticket.account_number)

    def _create_ticket(self, state: DialogueState, spec: dict[str, Any]) -> None:
        if state.flow_ticket is not None:
            return
        kind = spec["type"]
        priority = spec.get("priority") or self.domain.work_orders[kind].get("priority", "normal")
        fields = {f: state.slots[f] for f in spec.get("fields", []) if f in state.slots}
        fields["reported_by_call"] = True
        amending, state.amending = state.amending, None
        if amending is not None and amending.type == kind:  # the same request, put right
            ticket = self.crm.update_ticket(amending.id, fields=fields)
            state.tickets = [ticket if t.id == ticket.id else t for t in state.tickets]
            state.flow_ticket = ticket
            state.facts["ticket"] = self._ticket_facts(ticket)
            return
        same = next((t for t in state.tickets if t.type == kind and t.fields == fields), None)
        if same is not None:  # the caller said it again ("it was thirty five dollars")
            state.flow_ticket = same
            state.facts["ticket"] = self._ticket_facts(same)
            return
        account = state.customer.account_number if state.verified and state.customer else None
        ticket = self.crm.create_ticket(kind, priority, account, fields)
        state.flow_ticket = ticket
        state.tickets.append(ticket)
        state.facts["ticket"] = self._ticket_facts(ticket)

    def _update(self, state: DialogueState, said: list[str], spec: dict[str, Any]) -> bool:
        """Change the customer record. False when the CRM cannot keep the field: the caller
        is told so and offered a person, and the value is never written anywhere else."""
        field_name = spec["field"]
        if field_name not in CUSTOMER_FIELDS:
            self._offer_person(state, said, field_name)
            return False
        value = state.slots.get(spec.get("slot") or "")
        if not (state.verified and state.customer) or value is None:
            return True
        try:
            state.customer = self.crm.update_customer(state.customer.account_number,
                                                      **{field_name: value})
        except VoicedeskError:  # the CRM refuses this change from a call
            self._offer_person(state, said, field_name)
            return False
        if field_name == "plan":
            plan = self.domain.plan(value) or {}
            state.facts["plan"] = {"name": value, "price": f"{plan.get('price', 0):.2f}"}
        return True

    def _offer_person(self, state: DialogueState, said: list[str], field_name: str) -> None:
        detail = contact.WORDS.get(field_name, field_name.replace("_", " "))
        said.append(self.domain.prompts.get(
            "cannot_change", "I'm sorry, I can't change your {detail} on this call. Would you "
            "like me to put you through to a colleague who can?").format(detail=detail))
        state.offered_handoff = True

    def _say(self, state: DialogueState, arg: Any) -> str:
        if isinstance(arg, dict):
            arg = arg["then"] if self._fact(state, arg["if"]) else arg["else"]
        slots = {k: self._spoken(k, v) for k, v in state.slots.items()}
        facts = {**state.facts, "slots": slots, "verified": state.verified}
        if state.customer and state.verified:
            facts["customer"] = {"name": state.customer.name, "plan": state.customer.plan}
        return render(str(arg), facts)

    def _spoken(self, slot: str, value: str) -> str:
        """A slot value as the caller should hear it: a visit date as "Monday 7 December"
        (a secret date stays as it is, for the scrubber to find)."""
        spec = self.domain.slots.get(slot)
        day = dates.parse_iso(value) if spec and spec.type == "date" and not spec.sensitive \
            else None
        return dates.spoken_date(day, self._today()) if day else value

    def _look_up(self, turn: _Turn) -> Answer | None:
        """The knowledge base's answer to the turn: on its own, or read with the question
        answered just before when it follows on from that one ("and how many people can
        be on it?" after "how much is Family Share?"), or has no answer alone."""
        if self.knowledge is None:
            return None
        if turn.answer is not _UNASKED:  # several rules ask within one turn: once is enough
            return turn.answer
        turn.answer = self._read_up(turn)
        return turn.answer

    def _read_up(self, turn: _Turn) -> Answer | None:
        assert self.knowledge is not None
        asked = bool(turn.context) and offers.asks_a_question(turn.text)
        follows = asked and phrases.FOLLOW_UP.search(turn.text) is not None
        if asked and turn.answered_from and (within := self._within(turn)) is not None:
            turn.asked = f"{turn.context} {turn.text}"
            return within
        own = self.knowledge.answer(turn.text)
        if follows and own is not None and own.score >= SELF_CONTAINED:
            turn.asked = f"{turn.context} {turn.text}"  # the topic goes on
            return own
        alone = None if follows else own  # "what about for broadband?": the topic before
        if asked and alone is None:
            joined = self.knowledge.answer(turn.text, turn.context)
            if joined is not None and _said_before(joined.text, turn.heard_before):
                # the topic before outweighs the question ("and how long have I got to return
                # a phone?" after the shops' hours, which _within found unrelated): its own
                # reading, if it has one; the same answer again only for a question that
                # leans on the one before
                alone = own if follows else None
                joined = None if alone is not None or not follows else joined
            if joined is not None:
                turn.asked = f"{turn.context} {turn.text}"
                return joined
            alone = own if follows else alone
        turn.asked = turn.text
        return alone

    def _within(self, turn: _Turn) -> Answer | None:
        """A question about the section just read out ("is that per day or for the whole
        trip?" after the Day Pass), answered from that section: when the question alone
        is at least ``FOLLOW_UP_RELATED`` close to one of its sentences and no other
        section answers it clearly better."""
        assert self.knowledge is not None
        within = self.knowledge.answer_within(turn.answered_from, turn.text, turn.context)
        if within is None or within.score < FOLLOW_UP_RELATED:
            return None
        alone = self.knowledge.answer(turn.text)
        if alone is not None and alone.source != within.source and \
                alone.score > within.score + FOLLOW_UP_MARGIN:
            return None
        return within

    def _knowledge(self, state: DialogueState, said: list[str], turn: _Turn) -> str | None:
        answer = self._look_up(turn)
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
        said.append(state.question if state.pending
                    else "Could you tell me briefly what you're calling about?")

    def _unanswered(self, state: DialogueState, said: list[str]) -> None:
        """The caller repeats the request instead of answering: explain, then escalate."""
        slot = state.pending or ""
        state.misunderstandings += 1
        if state.misunderstandings > self.policy.max_misunderstandings:
            self._handoff(state, said, f"caller did not give the {slot.replace('_', ' ')}")
            return
        said.append("I can help with that, but I need this first.")
        said.append(state.question)

    def _handoff(self, state: DialogueState, said: list[str], reason: str) -> None:
        state.handoff, state.handoff_reason = True, reason
        state.pending = None
        said.append("I'm transferring you to a colleague now. I've passed on a summary, so you "
                    "won't need to repeat yourself.")

    def _scrub(self, state: DialogueState, reply: str) -> str:
        """Never speak a secret back, whatever produced the words."""
        secrets = [value for slot, spec in self.domain.slots.items()
                   if spec.sensitive and len(value := state.slots.get(slot) or "") >= 3]
        if state.customer:
            secrets += [state.customer.pin, state.customer.date_of_birth.isoformat()]
        for secret in secrets:
            reply = _withhold(reply, secret)
        return reply

    # ---- after the call ------------------------------------------------------------
    def summary(self, state: DialogueState) -> dict[str, Any]:
        """What a human agent (or an analyst) needs: no secrets, no raw PIN."""
        shown = {k: self._scrub(state, v) for k, v in state.slots.items()
                 if k in self.domain.slots and not self.domain.slots[k].sensitive}
        return call_summary(state, shown)

    disposition = staticmethod(disposition)


def _spoken_date(date: Any) -> str:
    return f"{date:%B} {date.day}"


def _service_named(text: str) -> str:
    """The service a caller's words are about ("my broadband", "no signal"), or "" when
    they name none or several."""
    named = {service for service, words in SERVICE_CUES.items() if words.search(text)}
    return named.pop() if len(named) == 1 else ""


def _card_number(text: str) -> bool:
    """A payment card's number read out ("it's 4929 1234 5678 9012"): PCI rules keep it out
    of the conversation, its slots and its transcript. A card's length (13 to 19 digits)
    and its check digit, or a word naming a card: an account number and a PIN said in
    one breath are 12 digits, and pass the check one time in ten."""
    for span in find_pii(text, CARD_ONLY):
        digits = re.sub(r"\D", "", spoken_digits_to_text(text[span.start:span.end]))
        if 13 <= len(digits) <= 19 and (luhn_valid(digits) or CARD_WORDS.search(text)):
            return True
    return False


def _said_before(answer: str, reply: str) -> bool:
    """The answer is what the caller was told last turn, word for word."""
    return bool(reply) and " ".join(answer.lower().split()) in " ".join(reply.lower().split())


def _withhold(reply: str, secret: str) -> str:
    """The secret wherever it stands as a number of its own; inside a longer one it is not
    the secret being spoken ("TKT-000001" holds PIN 0000 but says nothing of it)."""
    if not secret:
        return reply
    return re.sub(rf"(?<!\d){re.escape(secret)}(?!\d)", "[withheld]", reply)


def _steps(steps: list[Any]) -> list[tuple[str, Any]]:
    """A flow's steps as (kind, argument): ``verify`` is ("verify", None)."""
    return [(step, None) if isinstance(step, str) else next(iter(step.items()))
            for step in steps]


def _only_identity(text: str) -> bool:
    """'It's 40011234, pin 4821' asks for nothing: no flow should start from it."""
    named = phrases.NAMES.sub(" ", spoken_digits_to_text(text))
    rest = re.sub(r"[\d\W_]+", " ", phrases.FILLER.sub(" ", named))
    months = r"\b(january|february|march|april|may|june|july|august|september|october|" \
             r"november|december|st|nd|rd|th)\b"
    return len(re.sub(months, " ", rest, flags=re.I).split()) <= 1
