"""Knowledge answers grounded in the domain pack's Markdown, with their source.

Passages are the sections of the knowledge files; the answer is the one or
two sentences of the best passage closest to the question, spoken as written,
so the assistant cannot state a price or a policy that is not in the pack.
Below a similarity threshold the assistant says it does not know.

Names the embedder barely hears: "does my allowance work in Canada?" is
closest to the *Travel Zone* passage, but its sentences score 0.3 against
the 0.5 an answer needs. A question that names a word only one passage uses
(Canada, PAC, ombudsman) is answered by that passage when it is among the
three nearest and at least ``NAMED_FLOOR`` similar to the question as a
whole; "what's the weather in Canada?" (0.17) is not. On 25 questions
written to tune this (15 the pack answers, 10 it does not), 11 of the 15
were answered from the right section before and 15 after, none of the 10
either way; on 18 written afterwards (10 and 8), 5 before and 8 after, none
of the 8.

A section may list how callers ask for it (``? question [words of the answer]``
lines). A question at least ``ASKED_MATCH`` close to one of them is answered
from that section, the sentence holding the bracketed words first; closer
questions also bring a section among the nearest. On the same sets (2026-12-01)
that took the held-out 10 from 8 to 9 and left the off-pack questions
unanswered; on 71 questions from an outside round (then used to write some of
the sections' questions, so no longer held out), 58 to 65.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlu.embeddings import SentenceEmbedder
from nlu.prices import PRICE_QUESTION, STATES_A_PRICE
from voicedesk.errors import ConfigError

# A word in this many passages at most names what they are about: one (a word two use
# picks neither: "fibre" answered a minimum-term question with the broadband prices).
NAMED_PASSAGES = 1
# The least similarity of such a passage to the whole question for it to answer.
NAMED_FLOOR = 0.25
# How many of the nearest passages a name the question gives is looked for in.
NAMED_NEAREST = 5
# ... and how much closer another section's best sentence may be for the name to win.
NAMED_MARGIN = 0.15
# How close a question must be to one of a section's "? ..." questions for that section to
# answer it outright; below it those questions only help choose the nearest sections.
ASKED_MATCH = 0.75
_TOKEN = re.compile(r"[a-z][a-z0-9']+")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ANCHOR = re.compile(r"\[([^\]]+)\]\s*$")  # "? question [words of its answer]"
_FUNCTION_WORDS_TEXT = (
    "a about above after again all also am an and any are as at be been being before below "
    "between both but by can could did do does doing done during each few for from further "
    "get got had has have having he her here hers him his how i if in into is it it's its "
    "just me more most my myself no nor not now of off on once one only or other our ours "
    "out over own same she should so some such than that the their them then there these "
    "they this those through to too under until up very was we were what what's when where "
    "which while who whom why will with would you your yours yourself i'm i've i'd don't "
    "can't won't isn't"
)
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())


def _proper_names(text: str) -> set[str]:
    """Words written with a capital inside the sentence ("to Spain", "my PAC"), lowered."""
    return {w.lower() for w in re.findall(r"(?<=[a-z0-9,;:'] )[A-Z][A-Za-z0-9']+", text)}


def _words(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


@dataclass(frozen=True)
class Passage:
    source: str  # "roaming.md#Travel Zone"
    title: str
    text: str
    sentences: tuple[str, ...]
    questions: tuple[str, ...] = ()  # how callers ask for it: the section's "? ..." lines
    # for each question, words of the sentence that answers it ("? Is there a data cap?
    # [no data cap]"), or "" to let similarity choose
    anchors: tuple[str, ...] = ()
    # for each sentence, the products it is about: the names set in bold (**Basic Talk**)
    # in it or in its line ("Roaming is not included." in Basic Talk's bullet)
    subjects: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class Answer:
    text: str
    source: str
    score: float


def read_passages(folder: Path) -> list[Passage]:
    passages = []
    products = product_names(folder)
    for path in sorted(folder.glob("*.md")):
        title, lines, asked = path.stem.replace("_", " "), [], []

        def flush(title: str, lines: list[str], asked: list[str], path: Path = path) -> None:
            text = " ".join(" ".join(lines).split())
            if text:
                sentences = tuple(s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip())
                questions = [_ANCHOR.sub("", q).strip() for q in asked]
                anchors = [m.group(1).strip() if (m := _ANCHOR.search(q)) else ""
                           for q in asked]
                subjects = tuple(naming(products, next(
                    (line for line in lines if s in " ".join(line.split())), s))
                    for s in sentences)
                passages.append(Passage(f"{path.name}#{title}", title, text, sentences,
                                        tuple(questions), tuple(anchors), subjects))

        for line in path.read_text().splitlines():
            if line.startswith("#"):
                flush(title, lines, asked)
                title, lines, asked = line.lstrip("#").strip(), [], []
            elif line.startswith("?"):
                asked.append(line[1:].strip())
            else:
                lines.append(line.lstrip("-* ").replace("**", ""))
        flush(title, lines, asked)
    return passages


def product_names(folder: Path) -> list[str]:
    """The names the knowledge files set in bold: the products (the plans, **Basic Talk**)."""
    return sorted({name.strip() for path in sorted(folder.glob("*.md"))
                   for line in path.read_text().splitlines()
                   if not line.startswith(("#", "?")) for name in _BOLD.findall(line)})


def naming(products: Sequence[str], text: str) -> frozenset[str]:
    """The products a text names ("Fibre 100" is not named by "Fibre 1000")."""
    return frozenset(p for p in products if re.search(rf"\b{re.escape(p)}\b", text, re.I))


class Aliases:
    """Other names callers use for what the pack names one way ("the US", "Holland"), from
    the knowledge folder's ``aliases.yaml`` (``United States: [US, USA, America]``). An
    alias in capitals matches only in capitals: "US" is the country, "us" is not."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self._rules = [(re.compile(rf"\b{re.escape(alias)}\b",
                                   0 if alias.isupper() else re.I), name)
                       for name, aliases in (table or {}).items() for alias in aliases]

    @classmethod
    def read(cls, path: Path) -> Aliases:
        if not path.is_file():
            return cls()
        import yaml

        try:
            table = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
            raise ConfigError(f"{path}: expected a mapping of names to lists of aliases")
        return cls({str(k): [str(a) for a in v] for k, v in table.items()})

    def apply(self, text: str) -> str:
        for rule, name in self._rules:
            text = rule.sub(name, text)
        return text


class KnowledgeBase:
    def __init__(self, folder: Path, embedder: SentenceEmbedder, threshold: float = 0.5,
                 max_sentences: int = 2) -> None:
        self.passages = read_passages(folder)
        # the names in bold, as the passages read them (not the files a second time)
        self.products = sorted({name for p in self.passages for names in p.subjects
                                for name in names})
        self.aliases = Aliases.read(folder / "aliases.yaml")
        self.embedder = embedder
        self.threshold = threshold
        self.max_sentences = max_sentences
        self._vectors = embedder.embed([f"{p.title}. {p.text}" for p in self.passages])
        asked = [(i, q, a) for i, p in enumerate(self.passages)
                 for q, a in zip(p.questions, p.anchors or [""] * len(p.questions),
                                 strict=True)]
        self._asked_owner = np.array([i for i, _, _ in asked], dtype=int)
        self._asked_anchor = [a.lower() for _, _, a in asked]
        self._asked_vectors = embedder.embed([q for _, q, _ in asked]) if asked else None
        self._passage_words = [_words(f"{p.title} {p.text}") for p in self.passages]
        self._passage_count = Counter(w for words in self._passage_words for w in words)
        self._sentences: dict[tuple[int, bool], np.ndarray] = {}
        self._last: tuple[str | None, Answer | None] = (None, None)

    def answer(self, question: str, context: str = "") -> Answer | None:
        """The grounded answer, or None when nothing in the pack is close enough.

        ``context`` is the question answered just before, for a follow-up that leaves
        its topic out ("how much is that one?" after "which is your fastest fibre?"):
        the two are read together, but only the follow-up's own names count.

        The three passages nearest the question compete on their single best
        sentence: a passage about the right topic that does not contain the
        answer ("student discount" against the contracts section) scores low
        there, where a whole-passage score would let it through. Only when no
        sentence is close enough on its own are they read under their section's
        title: "Visits for faults on our network are free" answers "do you charge
        if an engineer comes out?" only as part of *Engineer visits*. (Titles
        first would let "Outside the Travel Zone" answer "what's the travel zone?".)
        """
        if not self.passages or not question.strip():
            return None
        key = f"{context}\n{question}"
        last = self._last  # one read: calls share the knowledge base across threads
        if last[0] == key:  # asked again in the same turn (is it answerable? answer it)
            return last[1]
        found = self._answer(question, context)
        if found is not None and PRICE_QUESTION.search(question) and \
                not STATES_A_PRICE.search(found.text):
            found = None  # "do you charge for paper bills?" is not answered by when bills come
        self._last = (key, found)
        return found

    def answer_within(self, source: str, question: str, context: str = "") -> Answer | None:
        """The answer from one section only (``source``, "roaming.md#Day Pass"): its
        sentences closest to the question, and how close the best is. A follow-up about
        what was just said ("is that per day or for the whole trip?") is answered from the
        section that said it, whatever other sections share its words; the product it
        means is the one it names, else the one ``context`` (the question before) named.
        None for a question naming what the section never mentions ("same deal in
        England?" after the Day Pass)."""
        index = next((i for i, p in enumerate(self.passages) if p.source == source), None)
        if index is None or not question.strip():
            return None
        question = self.aliases.apply(question)
        if not _proper_names(question) <= self._passage_words[index]:
            return None
        query = self.embedder.embed([question])[0]
        sims = self._sentence_scores(index, query, False)
        passage = self.passages[index]
        chosen = self._pick(passage, [int(i) for i in np.argsort(-sims)], question,
                            self.aliases.apply(context))
        return Answer(" ".join(passage.sentences[i] for i in chosen), source, float(sims.max()))

    def _answer(self, question: str, context: str = "") -> Answer | None:
        question = self.aliases.apply(question)
        query = self.embedder.embed([f"{context} {question}".strip()])[0]
        plain = np.asarray(self._vectors @ query)  # to the text alone: what a name needs
        similarity, asked = self._similarity(query)
        if asked is not None:  # a section's own "? ..." question, all but said
            index, toward, score, anchor = asked
            passage = self.passages[index]
            sims = self._sentence_scores(index, query, False) + toward
            ranked = [int(i) for i in np.argsort(-sims)]
            if anchor:  # the sentence the question names as its answer, first
                ranked.sort(key=lambda i: anchor not in passage.sentences[i].lower())
            text = " ".join(passage.sentences[i] for i in self._pick(passage, ranked, question))
            return Answer(text, passage.source, score)
        nearest = [int(i) for i in np.argsort(-similarity)[:3]]
        # A name the question gives (Spain, Mexico) tells apart sections on one topic:
        # the section naming it answers when its best sentence is nearly as close as any
        # ("will my phone cost extra in Spain?" is not answered with the Day Pass abroad),
        # but not a question about something else ("calling a mobile in India from home"
        # is about calls from home, wherever India is).
        names = _proper_names(question)
        if names:
            wider = [int(i) for i in np.argsort(-similarity)[:NAMED_NEAREST]]
            found = self._named(question, query, plain, wider, names)
            best = max(float(self._sentence_scores(i, query, False).max()) for i in nearest)
            if found is not None and found.score >= best - NAMED_MARGIN:
                return found
        for titled in (False, True):
            scored = [(self._sentence_scores(i, query, titled), i) for i in nearest]
            sims, index = max(scored, key=lambda pair: float(pair[0].max()))
            score = float(sims.max())
            if score >= self.threshold:
                passage = self.passages[index]
                chosen = self._pick(passage, [int(i) for i in np.argsort(-sims)], question)
                text = " ".join(passage.sentences[i] for i in chosen)
                return Answer(text, passage.source, score)
        return self._named(question, query, plain, nearest)

    def _similarity(self, query: np.ndarray
                    ) -> tuple[np.ndarray, tuple[int, np.ndarray, float, str] | None]:
        """Each passage's similarity to the question: to its text, or to the closest of
        the questions it answers when that is closer. And, when one of those questions is
        at least ``ASKED_MATCH`` close, (its passage, the passage's sentences' similarity
        to it, its similarity, the words of its answer) so that its section answers."""
        similarity = np.asarray(self._vectors @ query)
        if self._asked_vectors is None:
            return similarity, None
        asked = np.asarray(self._asked_vectors @ query)
        np.maximum.at(similarity, self._asked_owner, asked)
        best = int(np.argmax(asked))
        if asked[best] < ASKED_MATCH:
            return similarity, None
        index = int(self._asked_owner[best])
        toward = self._sentence_scores(index, self._asked_vectors[best], False)
        return similarity, (index, toward, float(asked[best]), self._asked_anchor[best])

    def _named(self, question: str, query: np.ndarray, similarity: np.ndarray,
               nearest: list[int], among: set[str] | None = None) -> Answer | None:
        """The nearest passage that uses a word of the question (of ``among``, if given)
        no other passage uses (see the module docstring): its sentences with that word,
        then its closest others."""
        words = _words(question) if among is None else among
        named = {w for w in words - _FUNCTION_WORDS
                 if len(w) >= 3 and 0 < self._passage_count.get(w, 0) <= NAMED_PASSAGES}
        for index in nearest:
            if similarity[index] < NAMED_FLOOR or not named & self._passage_words[index]:
                continue
            passage = self.passages[index]
            naming = [i for i, s in enumerate(passage.sentences) if named & _words(s)]
            others = [int(i) for i in np.argsort(-self._sentence_scores(index, query, False))
                      if int(i) not in naming]
            chosen = self._pick(passage, naming + others, question)
            text = " ".join(passage.sentences[i] for i in chosen)
            score = float(self._sentence_scores(index, query, False).max())
            return Answer(text, passage.source, max(score, float(similarity[index])))
        return None

    def _pick(self, passage: Passage, ranked: list[int], question: str,
              context: str = "") -> list[int]:
        """The first ``max_sentences`` of ``ranked`` (sentence numbers, best first), in the
        passage's order; a price question gets the passage's best sentence that states a
        price in place of the last, if none of them does ("is France extra?": the
        Travel Zone's "at no extra cost", not only its list of countries)."""
        asked = naming(self.products, question) or (  # "and how much is the 500 one?"
            naming(self.products, context) if not re.search(r"\d", question) else frozenset())
        about = [i for i in ranked if not passage.subjects[i] or passage.subjects[i] & asked]
        if asked and about:  # a question about one plan is not told about the others
            ranked = about
        chosen = ranked[: self.max_sentences]
        if PRICE_QUESTION.search(question) and not any(
                STATES_A_PRICE.search(passage.sentences[i]) for i in chosen):
            priced = next((i for i in ranked if STATES_A_PRICE.search(passage.sentences[i])),
                          None)
            if priced is not None:
                chosen = [*chosen[: self.max_sentences - 1], priced]
        return sorted(chosen)

    def _sentence_scores(self, index: int, query: np.ndarray, titled: bool) -> np.ndarray:
        """Each sentence's similarity to the question, alone or under its section's title."""
        key = (index, titled)
        if key not in self._sentences:
            passage = self.passages[index]
            self._sentences[key] = self.embedder.embed(
                [f"{passage.title}: {s}" if titled else s for s in passage.sentences])
        return np.asarray(self._sentences[key] @ query)
