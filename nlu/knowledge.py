"""Knowledge answers grounded in the domain pack's Markdown, with their source.

Passages are the sections of the knowledge files; the answer is the one or
two sentences of the best passage closest to the question, spoken as written,
so the assistant cannot state a price or a policy that is not in the pack.
Below a similarity threshold the assistant says it does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlu.embeddings import SentenceEmbedder


@dataclass(frozen=True)
class Passage:
    source: str  # "roaming.md#Travel Zone"
    title: str
    text: str
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    text: str
    source: str
    score: float


def read_passages(folder: Path) -> list[Passage]:
    passages = []
    for path in sorted(folder.glob("*.md")):
        title, lines = path.stem.replace("_", " "), []

        def flush(title: str, lines: list[str], path: Path = path) -> None:
            text = " ".join(" ".join(lines).split())
            if text:
                sentences = tuple(s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip())
                passages.append(Passage(f"{path.name}#{title}", title, text, sentences))

        for line in path.read_text().splitlines():
            if line.startswith("#"):
                flush(title, lines)
                title, lines = line.lstrip("#").strip(), []
            else:
                lines.append(line.lstrip("-* ").replace("**", ""))
        flush(title, lines)
    return passages


class KnowledgeBase:
    def __init__(self, folder: Path, embedder: SentenceEmbedder, threshold: float = 0.5,
                 max_sentences: int = 2) -> None:
        self.passages = read_passages(folder)
        self.embedder = embedder
        self.threshold = threshold
        self.max_sentences = max_sentences
        self._vectors = embedder.embed([f"{p.title}. {p.text}" for p in self.passages])
        self._sentences: dict[tuple[int, bool], np.ndarray] = {}
        self._last: tuple[str | None, Answer | None] = (None, None)

    def answer(self, question: str) -> Answer | None:
        """The grounded answer, or None when nothing in the pack is close enough.

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
        last = self._last  # one read: calls share the knowledge base across threads
        if last[0] == question:  # asked again in the same turn (is it answerable? answer it)
            return last[1]
        found = self._answer(question)
        self._last = (question, found)
        return found

    def _answer(self, question: str) -> Answer | None:
        query = self.embedder.embed([question])[0]
        nearest = [int(i) for i in np.argsort(-(self._vectors @ query))[:3]]
        for titled in (False, True):
            scored = [(self._sentence_scores(i, query, titled), i) for i in nearest]
            sims, index = max(scored, key=lambda pair: float(pair[0].max()))
            score = float(sims.max())
            if score >= self.threshold:
                passage = self.passages[index]
                chosen = sorted(np.argsort(-sims)[: self.max_sentences])
                text = " ".join(passage.sentences[i] for i in chosen)
                return Answer(text, passage.source, score)
        return None

    def _sentence_scores(self, index: int, query: np.ndarray, titled: bool) -> np.ndarray:
        """Each sentence's similarity to the question, alone or under its section's title."""
        key = (index, titled)
        if key not in self._sentences:
            passage = self.passages[index]
            self._sentences[key] = self.embedder.embed(
                [f"{passage.title}: {s}" if titled else s for s in passage.sentences])
        return np.asarray(self._sentences[key] @ query)
