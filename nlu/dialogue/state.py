"""Everything the dialogue knows about one call, and what each turn produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nlu.crm import Customer, Ticket


@dataclass
class DialogueState:
    caller_id: str = ""
    customer: Customer | None = None  # identified (by caller id or account number)
    verified: bool = False
    slots: dict[str, str] = field(default_factory=dict)
    flow: str | None = None
    step: int = 0
    pending: str | None = None  # the slot the assistant just asked for
    question: str = ""  # how it asked (a flow may word a slot's question its own way)
    facts: dict[str, Any] = field(default_factory=dict)
    flow_ticket: Ticket | None = None
    amending: Ticket | None = None  # the ticket a correction of the last request changes
    tickets: list[Ticket] = field(default_factory=list)
    verify_failures: int = 0
    misunderstandings: int = 0
    anger: int = 0
    offered_handoff: bool = False  # asked "shall I put you through?": lives one turn
    offered_flow: str | None = None  # told a price, asked "shall I go ahead?": lives one turn
    queued: list[str] = field(default_factory=list)  # asked in the same breath, answered next
    handoff: bool = False
    handoff_reason: str = ""
    ended: bool = False
    completed_flows: list[str] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)
    knowledge_sources: list[str] = field(default_factory=list)
    asked_before: str = ""  # the question the knowledge base answered last turn, if any
    answered_from: str = ""  # the section that answer came from ("roaming.md#Day Pass")
    just_done: str | None = None  # the flow the last turn finished, if any
    mentioned_plan: str | None = None  # the plan a knowledge answer was last about
    told: str = ""  # the reply of the turn that finished a flow, for a question after it
    transcript: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text)


@dataclass(frozen=True)
class TurnOutcome:
    """``intent`` is what the turn served: the flow it answered a question for, or the
    recogniser's choice. ``recognised_intent`` is always the recogniser's choice (empty
    for keypad turns), so a report can show what was heard even when a flow carried on;
    ``confidence`` is the recogniser's for either."""

    reply: str
    intent: str
    confidence: float
    slots: dict[str, str]
    verified: bool
    handoff: bool
    tickets: tuple[Ticket, ...] = ()
    knowledge_source: str | None = None
    end_call: bool = False
    actions: tuple[str, ...] = ()
    recognised_intent: str = ""
