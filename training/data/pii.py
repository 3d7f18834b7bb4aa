"""Where personal data sits in a transcript: card numbers, phones, e-mails, accounts, PINs, DOBs.

Detection returns character spans and a kind, never a cleaned string, so one
finding drives the text placeholder, the word list and the audio silence
alike. Rules are deterministic and conservative in one direction: a false
alarm costs a few words of training data, a miss leaks a customer's data.
Card numbers pass the Luhn check, follow a card word, or are too long (12+
digits) to be anything else and said with no word naming them; everything
else is anchored by what the caller said before it ("my PIN is ...") or by an
unmistakable shape (an e-mail address, "+44 ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from training.data.digits import Token, luhn_valid, number_runs, tokenize
from voicedesk.errors import VoicedeskError

CARD_CONTEXT_WORDS = 24  # words after "card" in which digits are taken for card digits
# "card number", "card ... number" (ASR inserts a word or two: "my cards. Number", "card on
# the number"), a card brand, "credit card"; never "SIM card" (a telecom caller who lost one
# gives their phone number next), nor "card, my phone number".
_CARD_CONTEXT = re.compile(
    r"(?<!sim )\b(?:credit |debit |bank |payment )?cards?"
    r"(?:\W+(?!(?:phone|mobile|cell|account|sim|pin|reference|order|ticket)\b)\w+){0,2}"
    r"\W+(?:number|no|details|digits)\b"
    r"|\b(?:visa|mastercard|amex|american express|credit card|debit card)\b",
    re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_BARE_CARD = re.compile(r"(?<!sim )\bcards?\b", re.IGNORECASE)
BARE_CARD_WORDS = 4  # without "number", the digits must start this close to "card"
_OTHER_NUMBERS = {"phone", "mobile", "cell", "account", "pin", "reference", "order", "ticket",
                  "sim", "postcode", "zip"}
_COPULAS = {"is", "are", "was", "it's", "its", "it", "be", "-", ""}
KINDS = ("card_number", "phone_number", "email", "account_number", "pin", "date_of_birth")

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december", "jan", "feb", "mar", "apr", "jun",
          "jul", "aug", "sep", "sept", "oct", "nov", "dec")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
            "sixteenth", "seventeenth", "eighteenth", "nineteenth", "twentieth", "thirtieth")
_DATE_FILLERS = {"on", "the", "of", "is", "was", "it's", "its", "it", "in", "-", "/", ","}
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_SPOKEN_EMAIL = re.compile(
    r"\b[A-Za-z0-9_]+(?:\s+dot\s+[A-Za-z0-9_]+)*\s+at\s+[A-Za-z0-9-]+"
    r"(?:(?:\s+dot\s+|\.)(?:com|net|org|co|uk|io|edu|gov|info|biz|ie|de|fr|au|ca))+\b",
    re.IGNORECASE)
_DOMAIN_END = re.compile(r"(?:\.|\bdot\s*)(?:com|net|org|co\.uk|uk|io|edu|gov|info|biz|ie|de|fr|"
                         r"au|ca)$", re.IGNORECASE)
_NUMERIC_DATE = re.compile(r"\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}|\d{1,2}(?:st|nd|rd|th)",
                           re.IGNORECASE)


@dataclass(frozen=True)
class PiiSpan:
    kind: str
    start: int  # character offsets, end exclusive
    end: int


@dataclass(frozen=True)
class RedactionPolicy:
    """What counts as personal data and how it is replaced. Defaults fit the telecom pack."""

    kinds: frozenset[str] = frozenset(KINDS)
    placeholder: str = "[{KIND}]"  # {KIND} is the kind in capitals, {kind} as is
    card_digits: tuple[int, int] = (13, 19)
    card_security_keywords: tuple[str, ...] = ("cvv", "cvc", "cv2", "security code",
                                               "card verification", "three digit code")
    # After these words a long number is a card even if the Luhn check fails: ASR drops or
    # mishears a digit, and the audio still holds the real card.
    card_keywords: tuple[str, ...] = ("card", "card number", "card no", "visa", "mastercard",
                                      "amex", "credit card", "debit card", "long number")
    phone_digits: tuple[int, int] = (10, 13)
    phone_keywords: tuple[str, ...] = ("phone", "mobile", "cell", "telephone", "call me on",
                                       "reach me on", "contact number", "landline")
    account_digits: tuple[int, int] = (6, 12)
    account_keywords: tuple[str, ...] = ("account number", "account no", "account",
                                         "customer number", "acct", "reference number")
    bare_account_lengths: tuple[int, ...] = (8,)  # the pack's account numbers, unanchored
    pin_digits: tuple[int, int] = (4, 6)
    pin_keywords: tuple[str, ...] = ("pin", "pin number", "pin code", "passcode", "pass code",
                                     "password")
    dob_keywords: tuple[str, ...] = ("date of birth", "birth date", "birthday", "born", "dob",
                                     "d.o.b")
    # A card read out loses digits to ASR (16 said, 12 heard): a number this long that no
    # word names is taken for a card. None while the caller answers a question for digits
    # (an account number and PIN in one breath are 12).
    unclaimed_card_digits: int | None = 12
    keyword_window: int = 32  # characters before a number searched for its keyword
    audio_padding_s: float = 0.15  # Whisper's word times are only this good

    @classmethod
    def only(cls, kinds: str | list[str] | tuple[str, ...] | None) -> RedactionPolicy:
        """The default policy limited to ``kinds`` (comma-separated or a list)."""
        if kinds is None:
            return cls()
        names = [k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds)
                 if k.strip()]
        unknown = sorted(set(names) - set(KINDS))
        if unknown or not names:
            raise VoicedeskError(f"unknown PII kind(s) {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {', '.join(KINDS)}")
        if "card_number" not in names:
            names.append("card_number")  # PCI DSS: never optional
        return cls(kinds=frozenset(names))

    def mark(self, kind: str) -> str:
        return self.placeholder.format(KIND=kind.upper(), kind=kind)


@dataclass
class Redacted:
    text: str
    spans: list[PiiSpan] = field(default_factory=list)  # in the original text

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for span in self.spans:
            out[span.kind] = out.get(span.kind, 0) + 1
        return out


def find_pii(text: str, policy: RedactionPolicy | None = None) -> list[PiiSpan]:
    """Non-overlapping findings in text order; stronger evidence wins an overlap."""
    policy = policy or RedactionPolicy()
    tokens = tokenize(text)
    found: list[PiiSpan] = []

    def add(spans: list[PiiSpan]) -> None:
        for span in spans:
            if span.kind not in policy.kinds:
                continue
            overlapping = [s for s in found if span.start < s.end and s.start < span.end]
            if not overlapping:
                found.append(span)
            elif span.kind == "card_number" and all(s.kind == "card_number"
                                                    for s in overlapping):
                # card digits around a card already found (ASR repeats and splits them):
                # one card, the widest stretch
                for s in overlapping:
                    found.remove(s)
                found.append(PiiSpan("card_number", min([span.start] + [s.start for s in
                                                                        overlapping]),
                                     max([span.end] + [s.end for s in overlapping])))

    add(_cards(text, tokens, policy))
    add(_emails(text))
    add(_said_emails(text, tokens))
    add(_dates_of_birth(text, tokens, policy))
    add(_anchored_numbers(text, tokens, policy))
    add(_bare_numbers(text, tokens, policy))
    return sorted(found, key=lambda s: s.start)


def redact_text(text: str, policy: RedactionPolicy | None = None) -> Redacted:
    """The text with every finding replaced by its placeholder, and the findings."""
    policy = policy or RedactionPolicy()
    spans = find_pii(text, policy)
    out = text
    for span in reversed(spans):
        out = out[:span.start] + policy.mark(span.kind) + out[span.end:]
    return Redacted(out, spans)


def _span(tokens: list[Token], first: int, last: int, kind: str) -> PiiSpan:
    """The words' characters, less quotes and sentence punctuation around them."""
    head, tail = tokens[first], tokens[last]
    lead = len(head.text) - len(head.text.lstrip("\"'[{<"))
    trail = len(tail.text) - len(tail.text.rstrip(",.;:!?\"']}>"))
    return PiiSpan(kind, head.start + lead, max(head.start + lead + 1, tail.end - trail))


def _digits(tokens: list[Token], first: int, last: int) -> str:
    return "".join(t.digits for t in tokens[first:last + 1])


def _cards(text: str, tokens: list[Token], policy: RedactionPolicy) -> list[PiiSpan]:
    """Luhn-valid windows of 13-19 digits inside runs of number words, longest first."""
    low, high = policy.card_digits
    spans: list[PiiSpan] = []
    for run in number_runs(tokens):
        candidates = []
        for a_pos, a in enumerate(run):
            if not tokens[a].digits:
                continue
            for b in run[a_pos:]:
                digits = _digits(tokens, a, b)
                if len(digits) > high:
                    break
                if len(digits) >= low and tokens[b].digits and luhn_valid(digits):
                    candidates.append((len(digits), a, b))
        taken: list[tuple[int, int]] = []
        for _, a, b in sorted(candidates, key=lambda c: (-c[0], c[1])):
            if all(b < x or a > y for x, y in taken):
                taken.append((a, b))
                spans.append(_span(tokens, a, b, "card_number"))
        if not taken:
            anchored = _anchored(text, tokens, run, policy.card_keywords, (low - 1, high),
                                 policy.keyword_window)
            if not anchored and _unclaimed_long_number(text, tokens, run, policy):
                anchored = [(run[0], run[-1])]
            spans += [_span(tokens, a, b, "card_number") for a, b in anchored]
        # The security code on the back is card data too (PCI DSS forbids storing it).
        for a, b in _anchored(text, tokens, run, policy.card_security_keywords, (3, 4)):
            spans.append(_span(tokens, a, b, "card_number"))
    return spans + _card_context(text, tokens, policy, spans)


def _unclaimed_long_number(text: str, tokens: list[Token], run: list[int],
                           policy: RedactionPolicy) -> bool:
    """A number too long to be anything a caller says here but a card, said with no word
    that makes it something else: treated as a card although it fails the Luhn check.

    ASR drops and repeats the digits of a read-out card and mishears the words before
    it ("my cut, the number is 1, 1, 1, ..." for "my card, the number is 4111 ..."), so
    neither the check digit nor "card" can be relied on. Phone numbers (an international
    "+..." or after "phone"), account and reference numbers keep their own kinds.
    """
    least = policy.unclaimed_card_digits
    if least is None or len(_digits(tokens, run[0], run[-1])) < least \
            or tokens[run[0]].text.lstrip("\"'([").startswith("+"):
        return False
    others = policy.phone_keywords + policy.account_keywords + policy.pin_keywords \
        + tuple(_OTHER_NUMBERS)
    return not _keyword_before(text, tokens[run[0]].start, others, policy.keyword_window)


def _card_context(text: str, tokens: list[Token], policy: RedactionPolicy,
                  found: list[PiiSpan]) -> list[PiiSpan]:
    """After "card" (or "visa", ...), every digit in the next few words is card data.

    ASR garbles a read-out card in ways no digit run survives ("my card number is
    411- older 1-1-1-1, 1-1-1, ...", "number is 4-1-1-1 I like the", "number is
    4OSE"); the audio still holds the whole card. So when eight or more digits
    follow a card word within ``CARD_CONTEXT_WORDS``, the stretch from the first
    to the last of them goes, words between included; when fewer do (or only a
    word with a digit in it), the card was lost to other words, and everything
    from the first of them to the end of the window goes; when none does, the
    rest of the sentence goes. Over-redacting a few words there is the price of
    never storing a card (PCI DSS recordings pause for the whole card capture).
    """
    spans: list[PiiSpan] = []
    cued = [(m.end(), True) for m in _CARD_CONTEXT.finditer(text)]
    # "my card, Remember is 4h1h1h1 1h1h1h1h1h1": no "number" heard, but digits in plenty
    cued += [(m.end(), False) for m in _BARE_CARD.finditer(text)]
    for at, named in cued:
        after = [i for i, t in enumerate(tokens) if t.start >= at][:CARD_CONTEXT_WORDS]
        numbered = [i for i in after if tokens[i].digits or _DIGIT.search(tokens[i].text)]
        if not named and (
                sum(len(_DIGIT.findall(tokens[i].text)) for i in numbered) < 8
                or not set(numbered) & set(after[:BARE_CARD_WORDS])
                or any(tokens[i].core in _OTHER_NUMBERS
                       for i in after[:after.index(numbered[0])])):
            continue  # a card, and then someone else's number ("my phone number is ...")
        if not numbered:
            # not one digit survived ("the number is familiarity."): what the caller said
            # there was the card, so the rest of the sentence goes
            lead = 0
            while lead < len(after) and \
                    tokens[after[lead]].core in _COPULAS:
                lead += 1
            said = after[lead:]
            if said:
                end = next((i for i in said if tokens[i].text.rstrip("\"')]")
                            .endswith((".", "?", "!"))), said[-1])
                span = _span(tokens, said[0], end, "card_number")
                if not any(f.start <= span.start and span.end <= f.end for f in found + spans):
                    spans.append(span)
            continue
        last = numbered[-1]
        if sum(len(tokens[i].digits) for i in numbered) < 8:
            last = after[-1]
        while last + 1 < len(tokens) and tokens[last + 1].digits:
            last += 1  # a run that goes on past the window ("-1 -1 -1 ..." loops) goes too
        span = _span(tokens, numbered[0], last, "card_number")
        if not any(f.start <= span.start and span.end <= f.end for f in found + spans):
            spans.append(span)
    return spans


def _emails(text: str) -> list[PiiSpan]:
    spans = [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    spans += [PiiSpan("email", m.start(), m.end()) for m in _SPOKEN_EMAIL.finditer(text)]
    return spans


def _said_emails(text: str, tokens: list[Token]) -> list[PiiSpan]:
    """An address Whisper garbled ("my email is jon.mit. And nampl.com."): after "email
    (address) is", everything up to the first word that ends like a domain."""
    spans: list[PiiSpan] = []
    for match in re.finditer(r"\be-?mail(?: address)?(?:\s+(?:is|it's|its|:))?", text,
                             re.IGNORECASE):
        after = [i for i, t in enumerate(tokens) if t.start >= match.end()][:8]
        for i in after:
            if _DOMAIN_END.search(tokens[i].text.rstrip(".,;:!?\"')")):
                spans.append(_span(tokens, after[0], i, "email"))
                break
    return spans


def _keyword_before(text: str, position: int, keywords: tuple[str, ...], window: int) -> bool:
    before = text[max(0, position - window):position].lower()
    return any(re.search(rf"\b{re.escape(k)}\b[^\d]*$", before) for k in keywords)


def _anchored(text: str, tokens: list[Token], run: list[int], keywords: tuple[str, ...],
              digits: tuple[int, int], window: int = 32) -> list[tuple[int, int]]:
    """The run that follows one of ``keywords``, if it has at least the fewest digits.

    Longer than expected is still that data (ASR splits and repeats digits: "0770,000,
    100, 100, 20, 3" is a phone number), so the whole run goes.
    """
    first = run[0]
    if not _keyword_before(text, tokens[first].start, keywords, window):
        return []
    if len(_digits(tokens, first, run[-1])) < digits[0]:
        return []
    return [(first, run[-1])]


def _anchored_numbers(text: str, tokens: list[Token], policy: RedactionPolicy) -> list[PiiSpan]:
    spans: list[PiiSpan] = []
    w = policy.keyword_window
    for run in number_runs(tokens):
        for kind, keywords, digits in (
                ("pin", policy.pin_keywords, policy.pin_digits),
                ("account_number", policy.account_keywords, policy.account_digits),
                ("phone_number", policy.phone_keywords, (7, policy.phone_digits[1]))):
            hits = _anchored(text, tokens, run, keywords, digits, w)
            if hits:
                spans += [_span(tokens, a, b, kind) for a, b in hits]
                break
    return spans


def _bare_numbers(text: str, tokens: list[Token], policy: RedactionPolicy) -> list[PiiSpan]:
    """Numbers whose shape alone gives them away: "+44 ...", "0770 ...", an 8-digit account."""
    spans: list[PiiSpan] = []
    for run in number_runs(tokens):
        digits = _digits(tokens, run[0], run[-1])
        first = tokens[run[0]].text.lstrip("\"'([")
        low, high = policy.phone_digits
        if first.startswith("+") and 8 <= len(digits) <= 15 or low <= len(digits) <= high:
            spans.append(_span(tokens, run[0], run[-1], "phone_number"))
        elif len(digits) in policy.bare_account_lengths:
            spans.append(_span(tokens, run[0], run[-1], "account_number"))
    return spans


def _dates_of_birth(text: str, tokens: list[Token], policy: RedactionPolicy) -> list[PiiSpan]:
    """The date words after "born", "date of birth"...: "born on the ninth of March 1984"."""
    spans: list[PiiSpan] = []
    pattern = "|".join(re.escape(k) for k in sorted(policy.dob_keywords, key=len, reverse=True))
    for match in re.finditer(rf"\b(?:{pattern})(?=\W|$)", text, re.IGNORECASE):
        after = [i for i, t in enumerate(tokens) if t.start >= match.end()][:10]
        first = last = None
        skipped = 0
        for i in after:
            word = tokens[i].text.strip("\"'()[]{}<>,.;:!?").lower()
            if _date_word(tokens[i], word):
                first = i if first is None else first
                last = i
            elif word in _DATE_FILLERS or not word:
                continue
            elif first is None and skipped == 0:
                skipped += 1  # a misheard day: "born on the basis of March 1984"
            else:
                break
            if tokens[i].text.rstrip().endswith((".", "?", "!")):
                break
        if first is not None and last is not None:
            spans.append(_span(tokens, first, last, "date_of_birth"))
    return spans


def _date_word(token: Token, word: str) -> bool:
    return (token.number or word in MONTHS or word in ORDINALS
            or bool(_NUMERIC_DATE.fullmatch(word)))
