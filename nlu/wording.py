"""The LLM words the reply; the flow's message is the fact sheet it must keep.

The dialogue manager decides what is said (a balance, a ticket number, a
question); the LLM may say it more naturally given what the caller said. A
draft is spoken only if it keeps every figure, time and reference of the
flow's message, adds no number of its own, reveals no secret and stays short;
otherwise the flow's own words are spoken. Each turn records which was used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nlu.domain import DomainPack
from nlu.llm.engine import GenerationOptions, LLMEngine

FACT = re.compile(r"TKT-\d+|\d+(?:[.:]\d+)?|\b(?:January|February|March|April|May|June|July|"
                  r"August|September|October|November|December)\b")
BANNED = re.compile(r"as an ai|language model|text-based|sorry for your loss|i don't have the "
                    r"ability|i cannot assist|i can't assist|caller said|message to say", re.I)
STOP = {"could", "would", "about", "there", "their", "which", "please", "thank", "thanks",
        "you're", "you've", "we'll", "that's", "what", "your", "yours", "have", "with", "this"}


@dataclass(frozen=True)
class Wording:
    text: str
    source: str  # "llm" or "flow"
    draft: str = ""


class ReplyWriter:
    def __init__(self, llm: LLMEngine, domain: DomainPack, options: GenerationOptions) -> None:
        self.llm = llm
        self.domain = domain
        self.options = options

    def write(self, message: str, caller: str, secrets: tuple[str, ...] = ()) -> Wording:
        if not message.strip():
            return Wording(message, "flow")
        system = self.domain.prompts.get("wording_system", "Rewrite the message naturally.")
        user = f"The caller said: {caller.strip()}\nMessage to say: {message.strip()}"
        draft = "".join(self.llm.stream([{"role": "system", "content": system},
                                         {"role": "user", "content": user}], self.options))
        draft = " ".join(draft.split())
        if acceptable(message, draft, secrets):
            return Wording(draft, "llm", draft)
        return Wording(message, "flow", draft)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']{5,}", text.lower()) if w not in STOP}


def acceptable(message: str, draft: str, secrets: tuple[str, ...] = ()) -> bool:
    """Whether a draft says what the message says, and nothing it must not."""
    if not draft or BANNED.search(draft):
        return False
    if any(secret and secret in draft for secret in secrets):
        return False
    facts = FACT.findall(message)
    if any(fact not in draft for fact in facts):
        return False
    if set(re.findall(r"\d+", draft)) - set(re.findall(r"\d+", message)):
        return False  # a number the flow did not give is invented
    words, draft_words = len(message.split()), len(draft.split())
    if not 0.5 * words <= draft_words <= 1.6 * words + 10:
        return False
    if len(re.findall(r"[.!?](?:\s|$)", draft)) > max(3, len(re.findall(r"[.!?]", message)) + 1):
        return False
    needed = _content_words(message)
    return not needed or len(needed & _content_words(draft)) >= 0.5 * len(needed)
