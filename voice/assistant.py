"""The assistant's models, loaded once and shared by every call in the process."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from asr.audio import resample
from asr.transcriber import QuickTranscriber, Transcriber, create_transcriber
from nlu.crm import CRM
from nlu.dialogue.manager import DialogueManager
from nlu.domain import DomainPack, load_domain
from nlu.embeddings import SentenceEmbedder
from nlu.knowledge import KnowledgeBase
from nlu.llm.engine import GenerationOptions, LLMEngine, create_engine
from nlu.slots import SlotExtractor
from nlu.understanding import IntentRecognizer
from nlu.wording import ReplyWriter, Wording
from training.intent_classifier import configured_classifier
from voice.speech_cache import SpeechCache
from voice.tts import Synthesizer, create_synthesizer
from voicedesk.config import Config
from voicedesk.models.prepare import ModelStore

log = logging.getLogger(__name__)


@dataclass
class SpokenReply:
    """A reply as the caller hears it, with when each part became ready."""

    text: str = ""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    sample_rate: int = 16_000
    latency_ms: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


@dataclass
class Assistant:
    config: Config
    transcriber: Transcriber
    llm: LLMEngine
    recognizer: IntentRecognizer
    synthesizer: Synthesizer
    domain: DomainPack
    slots: SlotExtractor
    knowledge: KnowledgeBase | None
    writer: ReplyWriter | None  # None: the flows' own words are spoken
    speech_cache: SpeechCache = field(default_factory=lambda: SpeechCache(0))
    _warm: bool = field(default=False, init=False, repr=False)

    @classmethod
    def load(cls, config: Config) -> Assistant:
        models = ModelStore(config.models_dir)
        domain = load_domain(config.nlu.domain)
        llm = create_engine(config.llm, models)
        embedder = SentenceEmbedder(models.embeddings(config.nlu.embeddings))
        classifier = configured_classifier(config, domain, models)
        options = GenerationOptions(max_new_tokens=config.llm.max_new_tokens,
                                    temperature=config.llm.temperature)
        return cls(
            config=config,
            transcriber=create_transcriber(config.asr, models),
            llm=llm,
            recognizer=IntentRecognizer(llm, embedder, domain, config.nlu.examples_per_turn,
                                        config.nlu.retrieval_weight, classifier=classifier,
                                        confident=config.nlu.classifier_confident),
            synthesizer=create_synthesizer(config.tts, models),
            domain=domain,
            slots=SlotExtractor(domain.slots, [p["name"] for p in domain.plans]),
            knowledge=KnowledgeBase(domain.knowledge_dir, embedder)
            if domain.knowledge_dir else None,
            writer=ReplyWriter(llm, domain, options) if config.nlu.llm_wording else None,
            speech_cache=SpeechCache.configured(config.tts.cache_mb),
        )

    def warm_up(self) -> float:
        """Each model once on real input, so that the first caller does not wait for
        first-run work (lazy initialisation, memory arenas): without it the first ASR
        pass took about 60 ms more and the first knowledge answer about 100 ms more.
        Once per assistant; returns the seconds it took."""
        if self._warm:
            return 0.0
        started = time.perf_counter()
        self._warm = True
        try:
            spoken = list(self.synthesizer.synthesize("Hello, I would like to check my balance."))
            speech = (resample(np.concatenate(spoken), self.synthesizer.sample_rate, 16_000)
                      if spoken else np.zeros(16_000, dtype=np.float32))
            if isinstance(self.transcriber, QuickTranscriber):
                self.transcriber.quick_pass(speech)  # a streaming pass
            self.transcriber.transcribe(speech, fallback=False)  # a pass for an answer
            self.recognizer.understand("I would like to check my balance")
            self.llm.score("Hello", [" there"])
            if self.knowledge is not None:
                self.knowledge.answer("How much does roaming cost?")
        except Exception as exc:  # noqa: BLE001 - e.g. an LLM server not up yet: calls will say
            log.warning("warm-up stopped early (%s); the first call may be slower", exc)
        return time.perf_counter() - started

    def speech(self, text: str) -> np.ndarray:
        """``text`` spoken, at the synthesiser's rate: kept audio if it was said before."""
        return self.speech_cache.speech(text, self._synthesize)

    def _synthesize(self, text: str) -> np.ndarray:
        chunks = list(self.synthesizer.synthesize(text))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def dialogue(self, crm: CRM) -> DialogueManager:
        """A dialogue manager over ``crm`` that shares this process's models."""
        return DialogueManager(self.domain, crm, self.recognizer.understand, self.slots,
                               self.knowledge)

    def describe(self) -> dict[str, str]:
        return {
            "asr": f"{self.config.asr.backend}:{self.config.asr.model}",
            "llm": f"{self.llm.name}:{self.config.llm.model}",
            "tts": f"{self.synthesizer.name}:{self.config.tts.voice}",
            "embeddings": self.config.nlu.embeddings,
            "intent_classifier": self.config.nlu.intent_classifier,
            "domain": self.domain.name,
            "wording": "llm (guarded)" if self.writer else "flows",
        }

    def word(self, message: str, caller: str, secrets: tuple[str, ...] = ()) -> Wording:
        """The words to speak for a flow's message: the LLM's, if they keep every fact."""
        if self.writer is None:
            return Wording(message, "flow")
        return self.writer.write(message, caller, secrets)

    def speak(self, sentences: Iterable[str], rate: int) -> SpokenReply:
        """Synthesise sentences as they arrive; record when text and audio were first ready."""
        started = time.perf_counter()
        reply = SpokenReply(sample_rate=rate)
        texts, chunks = [], []
        for sentence in sentences:
            if not texts:
                reply.latency_ms["first_sentence_ms"] = _ms(started)
            texts.append(sentence)
            for chunk in self.synthesizer.synthesize(sentence):
                if not chunks:
                    reply.latency_ms["tts_first_audio_ms"] = round(
                        _ms(started) - reply.latency_ms["first_sentence_ms"], 1)
                chunks.append(resample(chunk, self.synthesizer.sample_rate, rate))
        reply.latency_ms["reply_total_ms"] = _ms(started)
        reply.text = " ".join(texts)
        if chunks:
            reply.audio = np.concatenate(chunks)
        return reply
