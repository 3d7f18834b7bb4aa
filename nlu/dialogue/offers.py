"""How a caller answers a yes/no offer, how a caller asks for a person, and whether a
turn asks a question at all.

The assistant's offer ("shall I put you through to a colleague?") is answered
only by a short yes or no. "Okay, no worries. What time do your shops close?"
acknowledges the offer and moves on; "Yeah, and can you check my balance?" is a
new request. Taking either as consent transfers a caller who did not ask to go.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_YES_PHRASES = re.compile(r"\b(go ahead|go on|why not|of course|put me through|transfer me|"
                          r"connect me|that would be (great|good|lovely|helpful)|"
                          r"that'd be (great|good|lovely|helpful))\b")
_YES_WORDS = "yes yeah yep yup yea aye sure ok okay alright please absolutely definitely certainly"
_NO_WORDS = "no nope nah not"
# Words a short answer carries besides its yes or no: "yes please, that would be great".
_ANSWER_WORDS = (
    "go ahead on then do it that that'd that's would be great good lovely perfect fine "
    "helpful thanks thank you cheers of course right all put me through transfer connect to "
    "a the colleague someone somebody them why i i'd i'm i'll now just mate worries problem "
    "bother need ta oh well um uh er book sort order arrange for it one out")
_YES, _NO, _ANSWER = (frozenset(words.split()) for words in (_YES_WORDS, _NO_WORDS,
                                                              _ANSWER_WORDS))
_ASK_VERB = r"(talk|speak|chat|deal)\s+(to|with)|put\s+me\s+through\s+to|transfer\s+me\s+to|" \
            r"connect\s+me\s+(to|with)|pass\s+me\s+(on\s+)?to"
_PERSON = r"(real|actual|live)\s+(person|human|agent|one)|human(\s+being)?|person|agent|" \
          r"operator|representative|advis[eo]r|someone|somebody|colleague|manager"
_ASKS_FOR_PERSON = re.compile(
    rf"\b({_ASK_VERB})\s+(a|an|the|some|your|one\s+of\s+your)?\s*({_PERSON})\b"
    r"|\b(want|need|prefer|get\s+me|give\s+me)\s+(a|an)\s+(real\s+person|human|operator)\b")


def _words(text: str) -> tuple[list[str], bool]:
    """The words of a turn, and whether it asks a question."""
    lowered = _YES_PHRASES.sub(" yes ", text.lower().replace("’", "'"))
    return _WORD.findall(lowered), "?" in text


def is_consent(text: str) -> bool:
    """A short yes: a yes word, no no word, no question, little else ("yes please")."""
    words, question = _words(text)
    if question or not _YES & set(words) or _NO & set(words) or says_goodbye(text):
        return False  # "alright, thanks, goodbye" ends the call, it takes up no offer
    return len([w for w in words if w not in _YES | _ANSWER]) <= 1


def is_refusal(text: str) -> bool:
    """A short no ("no thanks", "no, that's fine"): nothing else, not even a goodbye."""
    words, question = _words(text)
    if question or not _NO & set(words):
        return False
    return all(w in _YES | _NO | _ANSWER for w in words)


def closes_with_no(text: str) -> bool:
    """An offer turned down in words that also close the call ("okay, no, that's all",
    "no, that's everything, bye"); a bare "no thanks" only turns the offer down."""
    lowered = text.lower().replace("’", "'")
    rest = re.sub(r"\bno,? thank(?:s| you)\b|\bnope\b", " ", lowered)
    return says_goodbye(rest) and is_refusal(_GOODBYE.sub(" ", lowered))


def declines(text: str) -> bool:
    """An offer turned down, with or without more said ("no thanks, just wondering",
    "no, I'll do it another time"): a short no, or one that opens the answer."""
    if is_refusal(text):
        return True
    words, _ = _words(text)
    return bool(words) and (words[0] in _NO or words[:2] == ["not", "now"]) and \
        not _YES & set(words[:3])


def asks_for_person(text: str) -> bool:
    """Words that ask for a person outright ("can I just talk to a real person?"),
    not words that merely mention one ("the agent I spoke to was rude")."""
    return bool(_ASKS_FOR_PERSON.search(text.lower()))


_FILLER_WORDS = ("um uh er erm so yeah yes hi hello hey okay ok right well and but oh also "
                 "just sorry excuse me quick question")
_OPENING_WORDS = ("do does did can could would will is are am was were have has what what's "
                  "whats how when where which who why whether any")
_FILLERS, _QUESTION_WORDS = (frozenset(words.split()) for words in (_FILLER_WORDS,
                                                                    _OPENING_WORDS))


def asks_a_question(text: str) -> bool:
    """A question mark, or a first word past the fillers that opens a question ("um, do
    you sell phone cases"): speech recognisers often leave the mark out."""
    if "?" in text:
        return True
    words = _WORD.findall(text.lower().replace("’", "'"))
    first = next((w for w in words if w not in _FILLERS), "")
    return first in _QUESTION_WORDS


_GOODBYE = re.compile(
    r"\b(?:good ?bye|bye|cheers|ta-ra|take care|see you|speak soon|talk (?:to you )?later|"
    r"that'?s (?:all|it|everything|fine)|that will be all|that'?ll (?:be all|do)|nothing else|"
    r"no(?:thing)? more|all (?:done|set|sorted|good)|i'?m (?:done|all set|good|fine|sorted)|"
    r"have a (?:good|nice|great|lovely) (?:day|one|evening|night|weekend)|no,? thanks|"
    r"no,? thank you|nope|hang(?:ing)? up|(?:got|have|need) to go|gotta go)\b")
_THANKS_ONLY = re.compile(r"^\W*(?:(?:ok(?:ay)?|alright|right|great|perfect|lovely|brilliant|"
                          r"fantastic|excellent|wonderful|super|cool|nice|fine|got it|"
                          r"that'?s (?:right|correct|great|perfect|lovely|brilliant|fine|"
                          r"good)(?: now)?)\W+)*"
                          r"(?:thanks|thank you)(?: (?:very|so) much| a lot)?"
                          r"(?: (?:for (?:all )?(?:your|the) help|for that|for everything|"
                          r"again))?\W*$")


def says_goodbye(text: str) -> bool:
    """Words that close a call ("that's all, thanks", "bye", a bare "thank you"): the
    call ends only on them, whatever a recogniser makes of "what?" or "uh"."""
    lowered = text.lower().replace("’", "'")
    return bool(_GOODBYE.search(lowered) or _THANKS_ONLY.match(lowered))
