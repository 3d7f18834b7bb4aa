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
        self._sentences: dict[int, np.ndarray] = {}

    def answer(self, question: str) -> Answer | None:
        """The grounded answer, or None when nothing in the pack is close enough.

        The three passages nearest the question compete on their single best
        sentence: a passage about the right topic that does not contain the
        answer ("student discount" against the contracts section) scores low
        there, where a whole-passage score would let it through.
        """
        if not self.passages or not question.strip():
            return None
        query = self.embedder.embed([question])[0]
        nearest = np.argsort(-(self._vectors @ query))[:3]
        best: tuple[float, int, np.ndarray] | None = None
        for index in nearest:
            sims = self._sentence_scores(int(index), query)
            if best is None or sims.max() > best[0]:
                best = (float(sims.max()), int(index), sims)
        assert best is not None
        score, index, sims = best
        if score < self.threshold:
            return None
        passage = self.passages[index]
        chosen = sorted(np.argsort(-sims)[: self.max_sentences])
        text = " ".join(passage.sentences[i] for i in chosen)
        return Answer(text, passage.source, score)

    def _sentence_scores(self, index: int, query: np.ndarray) -> np.ndarray:
        """Each sentence's similarity to the question, alone or under its section's title,
        whichever is closer: "Visits for faults on our network are free" answers "do you
        charge if an engineer comes out?" only as part of *Engineer visits*, while
        "Restart the router" is closer alone than under *Slow internet or Wi-Fi*."""
        if index not in self._sentences:
            passage = self.passages[index]
            self._sentences[index] = np.stack([
                self.embedder.embed(list(passage.sentences)),
                self.embedder.embed([f"{passage.title}: {s}" for s in passage.sentences])])
        return np.asarray((self._sentences[index] @ query).max(axis=0))
