"""What words say about prices: a caller's question that asks one, words that make it
about the caller's own money instead, and a sentence that states a price.

The knowledge base answers a price question only with a sentence that states a price
("do you charge for paper bills?" is not answered by when bills arrive); the dialogue
answers a price question about a request that would change something instead of making
the change ("what would it cost to upgrade?"), unless it is about the caller's own money
("why is there a charge of $35 on my account?" is a dispute).
"""

from __future__ import annotations

import re

PRICE_QUESTION = re.compile(r"\bhow much\b|\bcosts?\b|\bprices?\b|\bfees?\b|\bcharges?\b|"
                            r"\bis (?:it|that|there) (?:free|extra|a charge)\b|"
                            r"\bpay (?:extra|more|anything|something)\b", re.I)
HOW_MUCH = re.compile(r"\bhow much\b", re.I)  # a question, with or without its mark
OWN_MONEY = re.compile(r"\b(?:owe|(?:my|our) (?:bill|balance|account|statement|invoice|data|"
                       r"usage)|charged me|i was charged|refund|(?:have|got) (?:i |we )?"
                       r"(?:used|left)|(?:have|has|did) (?:i|we) used?|(?:i|we)'?ve used|"
                       r"data (?:have|did) (?:i|we)|charges? (?:of|on)|(?:this|that|these|those) "
                       r"charges?)\b", re.I)
STATES_A_PRICE = re.compile(r"\$\s?\d|\d\s?(?:cents?|dollars?|pounds?|%)|\bfree\b|"
                            r"\bno (?:extra |additional )?(?:charge|cost|fee)s?\b|"
                            r"\bat no (?:extra )?cost\b|\bincluded\b|\bnormal allowance\b",
                            re.I)


def asks_a_price(text: str) -> bool:
    """A question about what something costs, not about what the caller owes or paid."""
    return PRICE_QUESTION.search(text) is not None and OWN_MONEY.search(text) is None
