"""Patterns in a caller's words that steer the dialogue: anger, asking to repeat, two
requests in one turn, the ticket just opened, a request called off, a forgotten PIN, and the
filler around identity answers. Each is matched on the caller's text as heard."""

from __future__ import annotations

import re

ANGER = re.compile(r"\b(ridiculous|useless|furious|angry|outrageous|disgusting|pathetic|"
                   r"fed up|sick of|fucking|bloody|damn|shit|hate you|worst)\b", re.I)
# "Sorry, what was that?", "pardon?", "can you say that again?"
REPEAT = re.compile(r"\b(?:what was that|pardon|(?:say|repeat) (?:that|it|this)(?: again)?|"
                    r"come again|didn'?t (?:catch|hear|get) (?:that|you|it)|what did you say|"
                    r"one more time)\b|^\W*(?:sorry|what|huh|eh)\W*$|"
                    # "and when is it due again?", "sorry, what time did you say?"
                    r"^\W*(?:(?:and|so|sorry|um|uh|ok(?:ay)?)\W+)*(?:what|when|how much|how "
                    r"long|which)\b[^.?!]{0,40}\b(?:again|did you (?:say|tell me))\W*$", re.I)
# When the caller's own bill must be paid: "when does it have to be paid by?", "when is my
# bill due?", "what's the due date on that?" ("when are bills due?" asks the policy).
WHEN_DUE = re.compile(r"(?=.*\b(?:it|my|i|me|this|that)\b)(?:\bwhen\b[^.?!,]*\b(?:due|"
                      r"pa(?:y|id)(?: it| this| that| the bill| my bill)? by\W*$)|\bby when\b"
                      r"[^.?!]*\bpay\b|\bdue date\b)", re.I)
# Where one turn joins two requests ("my balance and also my data usage").
ALSO = re.compile(r",?\s+\b(?:and also|and then|and|as well as|plus|also)\b\s+", re.I)
# The ticket this call just created, referred to as such.
THAT_TICKET = re.compile(r"\b(?:that|this|the|my) (?:ticket|reference|case|complaint|"
                         r"request)(?: number)? (?:you|that you|which you) (?:just )?"
                         r"(?:opened|created|gave|made|raised|logged)|\b(?:that|this) "
                         r"(?:ticket|reference|case)\b", re.I)
# Asking for the one plan that is most something: "what's your cheapest mobile plan?" (the
# lowest price), "the fastest broadband" (the highest).
SUPERLATIVE = re.compile(r"\b(?:cheapest|fastest|quickest|biggest|smallest|best|least "
                         r"expensive|most expensive|lowest|highest|top)\b", re.I)
SUPERLATIVE_LOW = frozenset({"cheapest", "smallest", "least expensive", "lowest"})
# Taking the plan just spoken of: "I'll take that, upgrade me please", "sign me up".
TAKE_IT = re.compile(r"\b(?:i'?ll|i will|we'?ll|i'?d like to) (?:take|have|go (?:with|for)) "
                     r"(?:that|it|this)(?: one| plan)?\b|\bsign me up\b|\b(?:upgrade|switch|"
                     r"move|put) me(?: (?:to|on|onto|over to) (?:that|it|this)(?: one| plan)?)?\b|"
                     r"\b(?:move|switch|change|upgrade|go) (?:to|over to|onto) (?:that|this)"
                     r"(?: one| plan)?\b", re.I)
# What the caller points at, the thing just spoken of: "that one", "it".
THAT_ONE = re.compile(r"\b(?:that|this)(?: one)?\b|\bit\b", re.I)
# "What was that reference again?", "sorry, what's my ticket number?": the one just given.
WHICH_REFERENCE = re.compile(r"\bwhat(?: was|'s| is)? (?:the|that|my|your|this) (?:reference|"
                             r"ticket|case)(?: number)?\b|\b(?:reference|ticket) number again\b|"
                             r"\b(?:repeat|say) (?:the|that|my) (?:reference|ticket)", re.I)
# Words that take a request back, under way or just made: "I've changed my mind",
# "don't cancel it", "call it off".
_CHANGED_MIND = (r"\bchanged my mind\b|\b(?:don'?t|do not) (?:(?:want|need) to )?"
                 r"(?:cancel|book|go ahead)\b|\bcall it off\b")
# The caller calls off the request under way.
CALL_OFF = re.compile(_CHANGED_MIND + r"|\bnever ?mind\b|\bforget (?:it|about it|that)\b|"
                      r"\b(?:don'?t|do not) bother\b", re.I)
# The request just made taken back in so many words: "I've changed my mind, don't cancel
# it", "call it off", "cancel that booking".
TAKEN_BACK = re.compile(_CHANGED_MIND + r"|\b(?:cancel|withdraw|undo|scrap) (?:that|the|my) "
                        r"(?:request|cancellation|booking|ticket|order)\b|"
                        # "it was in my coat pocket the whole time, can you cancel that?"
                        r"\b(?:cancel|withdraw|undo|scrap|reverse) (?:that|it|all that)\W*$",
                        re.I)
# A bare acknowledgement ("Okay.", "right, I see"): nothing asked, nothing to do.
ACKNOWLEDGES = re.compile(r"^\W*(?:(?:ok(?:ay)?|right|alright|all right|fine|great|cool|sure|"
                          r"got it|i see|understood|mhm+|uh[- ]huh|hmm+|yeah|yep|ah|oh|so|then)"
                          r"\W*)+$", re.I)
# "What else do you need from me?", "what do I have to give you?" while a value is asked for.
WHAT_NEEDED = re.compile(r"\bwhat (?:else )?(?:do|did|would) you (?:need|want)\b|\bwhat do i "
                         r"(?:need|have) to (?:give|tell|say|do)\b|\bwhat (?:else )?is needed\b",
                         re.I)
# A value just given put right ("no sorry, I meant Thursday, not Tuesday", "actually make it
# the afternoon", "it was 45 dollars, not 35").
CORRECTS = re.compile(r"\b(?:i meant|i mean|no,? sorry|sorry,? no|oh no|actually|instead|"
                      r"make (?:it|that)|change (?:it|that) to|rather|not \w+\W*$|"
                      r"i said|it was|it's meant to be|should be)\b", re.I)
# "I forgot my PIN", "I don't know it", "no idea, sorry"
FORGOTTEN = re.compile(r"\b(?:forgot|forgotten|forget|no idea|not sure what it is|"
                       r"(?:don'?t|do not) have (?:it|my pin|the pin|that)(?: \w+)?|"
                       r"(?:can'?t|cannot|don'?t|do not)\s+(?:\w+\s+)?(?:remember|recall|know)|"
                       r"never (?:had|set|got))\b", re.I)
FILLER = re.compile(r"\b(it'?s|it is|my|is|the|and|account|number|no|pin|code|date|of|birth|"
                    r"born|on|hi|hello|hey|yes|sure|ok(ay)?|here|there|that'?s|i|i'?m|am|er|um|"
                    r"uh|again|this|calling|speaking|name|called|fine|right|alright|so|well|"
                    r"yeah|yep|go on|then|oh|sorry|ah|here you go|let me see)\b", re.I)
# A caller naming themself ("it's Sarah Mitchell", "this is Tom"): the name, one or two words.
NAMES = re.compile(r"\b(?i:it'?s|it is|this is|i'?m|i am|my name is|name'?s)\s+"
                   r"[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)?")
# A question that follows on from the one just answered and leaves its topic out: "and
# what about in the US?", "how much is that one?", "and how many people can be on it?".
FOLLOW_UP = re.compile(r"^\W*(?:(?:ok(?:ay)?|right|oh|so|um|uh)\W+)*(?:and|what about|how about|"
                       r"also|then|what if)\b|\b(?:that one|this one|that plan|that|it|there|"
                       r"them|those)\W*$|^(?:\W*\w+){0,8}\W*\b(?:that|this one|it|there)\b",
                       re.I)
# Asking after someone else's account ("what does my sister owe on hers?", "my husband's
# balance"): told only to its holder, whoever is verified on this call.
_RELATIVE = (r"(?:sister|brother|husband|wife|partner|mum|mom|mother|dad|father|son|daughter|"
             r"friend|girlfriend|boyfriend|neighbou?r|flatmate|roommate|colleague|boss)")
SOMEONE_ELSE = re.compile(rf"\b(?:my|his|her|their) {_RELATIVE}'?s? (?:account|balance|bill|"
                          rf"usage|data|plan|ticket)\b|\b(?:what|how much) (?:does|did|has) "
                          rf"(?:my|his|her|their) {_RELATIVE} (?:owe|use|used|pay)\b|"
                          rf"\bon (?:hers|his|theirs)\b", re.I)
# Identity given for someone else's account, as the caller says ("my husband owes, his
# account number is ...", "I've got her PIN"): knowing it does not make them its holder.
FOR_SOMEONE_ELSE = re.compile(
    rf"\b(?:my|his|her|their) {_RELATIVE}'?s? (?:account|pin|date of birth)\b|"
    rf"\b(?:my|his|her|their) {_RELATIVE} (?:owes?|has used|used|pays)\b|"
    r"\b(?:his|her|their) (?:account(?: number)?|pin|date of birth|birthday|bill|details|"
    r"balance)\b|\b(?:he|she|they)(?:'s| has| have|'ve) given me\b|\bon (?:his|her|their) "
    r"behalf\b", re.I)
# A request put as a question ("can you change my plan?", "can I get a new SIM?") or said
# outright ("I'd like to ..."), as against a question about how things work ("can I keep
# my number if I leave?", "can you tell me how long porting takes?").
REQUEST = re.compile(r"\b(?:(?:i'?d like|i would like|i want|i wanna|i need) to (?!know|understand|"
                     r"ask|find out|check whether|check if)|i'?d like (?!to)|i want (?!to)|"
                     r"is it possible to|is there (?:any )?way (?:to|i can|you can|you could)|"
                     r"(?:can|could|would|will) you (?!tell me|explain|let me know))\b|"
                     r"(?:^|[.,;!?]\s*)(?:(?:um|uh|so|and|but|ok|okay|yes|hi|hello|well|"
                     r"right)\W+)*(?:can|could|may) i (?!use|keep|take|bring|still)", re.I)
# The caller's own account, line or money: what a flow looks up, not the knowledge base.
OWN_ACCOUNT = re.compile(r"\b(?:my|our) (?:bill|balance|account|usage|ticket|order|payment|"
                         r"plan|contract|area|line|connection|service|internet|broadband|"
                         r"wi-?fi|allowance|data)\b|\bi owe\b|\b(?:have|did) i (?:used|use)\b|"
                         r"\bi'?ve used\b|\b(?:do|have) i (?:have|got) left\b", re.I)
_SENTENCE = re.compile(r"[^.?!]+\?")
_WH = re.compile(r"^\W*(?:(?:and|so|but|um|uh|ok(?:ay)?|right|well|sorry)\W+)*(?:what|what's|"
                 r"whats|when|where|which|who|why|how)\b", re.I)


def asks_what_or_how(text: str) -> bool:
    """A question of its own words' asking ("what hours is the afternoon slot?"), not one
    to be answered yes or no ("can an engineer come on Thursday afternoon?")."""
    return any(_WH.search(clause) for sentence in _SENTENCE.findall(text)
               for clause in re.split(r"[,;:]", sentence))


def asks_how_things_are(text: str, requests_count: bool = True) -> bool:
    """A question about how things work or what they cost, not a request and not about the
    caller's own account: "what other ways can I pay you?", "my daughter is 16, can she be
    at home for the engineer?", but not "can I pay my bill?" or "when is my bill due?".
    ``requests_count`` False: a request put as a question counts too, for a request that
    only looks something up ("can I add more data?" is no data-usage request)."""
    asked = bool(_SENTENCE.findall(text)) or any(  # speech recognisers drop the mark
        _WH.search(clause) for clause in re.split(r"[,;:.]", text))
    request = requests_count and REQUEST.search(text) is not None
    return asked and not request and not OWN_ACCOUNT.search(text)
