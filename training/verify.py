"""Verification: a candidate against the promoted model on the same held-out data.

For an LLM: intent accuracy and macro-F1, out-of-scope recall, slot F1 and
latency on held-out turns (a dataset's ``test.jsonl`` and/or the domain
pack's held-out examples, which are removed from the retrieval index first
so neither model can look them up), and the scenario-suite pass rate. For
Whisper: WER on held-out in-domain clips and on a general set, and the
real-time factor. The gates (``training.gates``) turn the two sets of
metrics into pass or fail. The candidate folder is checked before any model
is loaded, so an incomplete export fails in a second with what is missing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from training.export import ExportedModel, open_exported
from training.gates import DEFAULT_GATES, Gate, judge
from training.task_examples import AudioExample, TurnExample
from voicedesk.config import Config

SCENARIOS = Path(__file__).resolve().parent.parent / "nlu" / "domain" / "telecom" / \
    "scenarios.yaml"


@dataclass
class VerifyOptions:
    turns: list[TurnExample] = field(default_factory=list)  # held-out turns (LLM)
    clips: list[AudioExample] = field(default_factory=list)  # held-out in-domain audio (ASR)
    general_clips: list[AudioExample] = field(default_factory=list)  # a general ASR set
    scenarios: Path | None = SCENARIOS
    gates: dict[str, Gate] = field(default_factory=lambda: dict(DEFAULT_GATES))
    # The recogniser's retrieval weight, over what the model's marker says (None: as served)
    retrieval_weight: float | None = None


@dataclass
class Verdict:
    kind: str
    candidate: str
    baseline: str
    passed: bool
    metrics: dict[str, dict[str, Any]]  # {"candidate": {...}, "baseline": {...}}
    gates: list[dict[str, Any]]
    details: dict[str, Any] = field(default_factory=dict)  # per-model confusions, failures

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "candidate": self.candidate, "baseline": self.baseline,
                "passed": self.passed, "metrics": self.metrics, "gates": self.gates,
                "details": self.details}


# ---- metrics -----------------------------------------------------------------------
def intent_metrics(gold: list[str], predicted: list[str]) -> dict[str, float | None]:
    labels = sorted(set(gold))
    f1s = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, predicted, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    oos = [p == "out_of_scope" for g, p in zip(gold, predicted, strict=True)
           if g == "out_of_scope"]
    return {"intent_accuracy": sum(g == p for g, p in zip(gold, predicted, strict=True))
            / len(gold),
            "intent_macro_f1": sum(f1s) / len(f1s),
            "oos_recall": sum(oos) / len(oos) if oos else None}


def slot_f1(gold: list[dict[str, str]], found: list[dict[str, str]]) -> float | None:
    """Micro F1 over (slot, value) pairs, on turns whose slots were annotated."""
    tp = fp = fn = 0
    annotated = 0
    for g, f in zip(gold, found, strict=True):
        if not g and not f:
            continue
        annotated += 1
        gs, fs = set(g.items()), set(f.items())
        tp, fp, fn = tp + len(gs & fs), fp + len(fs - gs), fn + len(gs - fs)
    if not any(gold):
        return None
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


# ---- LLM -------------------------------------------------------------------------
@dataclass
class LlmUnderTest:
    label: str
    engine: Any  # an LLMEngine


def load_llm(config: Config, path: str | None) -> LlmUnderTest:
    """The engine ``config.llm.engine`` on ``path`` (None: the configured model)."""
    from nlu.llm.engine import create_engine
    from voicedesk.models.prepare import ModelStore

    llm_config = config.llm if path is None else replace(config.llm, model=path)
    engine = create_engine(llm_config, ModelStore(config.models_dir))
    return LlmUnderTest(path or config.llm.model, engine)


def evaluate_llm(model: LlmUnderTest, config: Config, options: VerifyOptions,
                 embedder: Any, say: Callable[[str], None] = lambda _: None) -> tuple[
                     dict[str, Any], dict[str, Any]]:
    from nlu.domain import load_domain
    from nlu.slots import SlotExtractor
    from nlu.understanding import IntentRecognizer
    from training.task_examples import without_examples

    domain = load_domain(config.nlu.domain)
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    if options.turns:
        held_out = IntentRecognizer(model.engine, embedder, without_examples(domain,
                                                                             options.turns),
                                    config.nlu.examples_per_turn, config.nlu.retrieval_weight)
        if options.retrieval_weight is not None:
            held_out.retrieval_weight = options.retrieval_weight
        metrics["retrieval_weight"] = held_out.retrieval_weight
        predicted, times = [], []
        for example in options.turns:
            started = time.perf_counter()
            predicted.append(held_out.understand(example.text, example.context).intent)
            times.append((time.perf_counter() - started) * 1000)
        gold = [e.intent for e in options.turns]
        metrics.update(intent_metrics(gold, predicted))
        extractor = SlotExtractor(domain.slots, [p["name"] for p in domain.plans])
        metrics["slot_f1"] = slot_f1([e.slots for e in options.turns],
                                     [extractor.extract(e.text) for e in options.turns])
        metrics["latency_p50_ms"] = statistics.median(times)
        metrics["latency_p95_ms"] = sorted(times)[int(0.95 * (len(times) - 1))]
        metrics["turns"] = len(gold)
        metrics["mode"] = held_out.mode
        details["errors"] = [{"text": e.text, "gold": e.intent, "predicted": p}
                             for e, p in zip(options.turns, predicted, strict=True)
                             if e.intent != p]
        say(f"{model.label}: intent accuracy {metrics['intent_accuracy']:.3f} on {len(gold)} "
            f"held-out turns, {metrics['latency_p50_ms']:.0f} ms a turn ({held_out.mode})")
    if options.scenarios is not None:
        rate, failed = scenario_pass_rate(model, config, embedder, domain, options.scenarios)
        metrics["scenario_pass_rate"] = rate
        details["scenario_failures"] = failed
        say(f"{model.label}: scenario pass rate {rate:.3f}")
    return metrics, details


def scenario_pass_rate(model: LlmUnderTest, config: Config, embedder: Any, domain: Any,
                       path: Path) -> tuple[float, list[str]]:
    from nlu.dialogue.manager import DialogueManager
    from nlu.knowledge import KnowledgeBase
    from nlu.scenarios import run_scenarios
    from nlu.slots import SlotExtractor
    from nlu.understanding import IntentRecognizer

    recognizer = IntentRecognizer(model.engine, embedder, domain, config.nlu.examples_per_turn,
                                  config.nlu.retrieval_weight)
    slots = SlotExtractor(domain.slots, [p["name"] for p in domain.plans])
    knowledge = KnowledgeBase(domain.knowledge_dir, embedder) if domain.knowledge_dir else None
    results = run_scenarios(path, lambda crm: DialogueManager(domain, crm, recognizer.understand,
                                                              slots, knowledge))
    return sum(r.passed for r in results) / len(results), [r.name for r in results
                                                           if not r.passed]


# ---- ASR -------------------------------------------------------------------------
def evaluate_asr(model_dir: str, config: Config, options: VerifyOptions,
                 say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    from asr.audio import load_audio
    from asr.evaluation import WordErrors, normalize, word_errors
    from asr.transcriber import create_transcriber
    from voicedesk.models.prepare import ModelStore

    transcriber = create_transcriber(replace(config.asr, model=model_dir),
                                     ModelStore(config.models_dir))
    metrics: dict[str, Any] = {}
    audio_s = work_s = 0.0
    for name, clips in (("wer", options.clips), ("wer_general", options.general_clips)):
        if not clips:
            continue
        total = WordErrors(0, 0, 0, 0)
        for clip in clips:
            audio = load_audio(clip.audio)
            started = time.perf_counter()
            text = transcriber.transcribe(audio.samples).text
            work_s += time.perf_counter() - started
            audio_s += audio.duration
            total = total + word_errors(normalize(clip.text), normalize(text))
        metrics[name] = total.wer
        say(f"{model_dir}: {name} {total.wer:.2f} % on {len(clips)} clip(s)")
    if audio_s:
        metrics["rtf"] = work_s / audio_s
    return metrics


# ---- the whole check -------------------------------------------------------------
def verify(candidate_path: str | Path, config: Config, options: VerifyOptions,
           baseline: ExportedModel | None = None,
           say: Callable[[str], None] = lambda _: None) -> Verdict:
    """Evaluate candidate and baseline (the promoted model, else the configured one)."""
    candidate = open_exported(candidate_path)  # before anything loads
    if candidate.kind == "llm" and not options.turns and options.scenarios is None:
        from training.task_examples import DataError

        raise DataError("an LLM is verified on held-out turns or scenarios; give --data "
                        "(a dataset with test.jsonl) or --domain")
    if candidate.kind == "asr" and not options.clips and not options.general_clips:
        from training.task_examples import DataError

        raise DataError("Whisper is verified on held-out audio; give --data (a dataset with "
                        "asr/test.jsonl) or --general MANIFEST.tsv")
    metrics: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {}
    if candidate.kind == "llm":
        from nlu.embeddings import SentenceEmbedder
        from voicedesk.models.prepare import ModelStore

        embedder = SentenceEmbedder(ModelStore(config.models_dir).embeddings(
            config.nlu.embeddings))
        engine = config.llm.engine
        runs = [("candidate", str(candidate.serving_path(engine))),
                ("baseline", str(baseline.serving_path(engine)) if baseline else None)]
        for role, path in runs:
            model = load_llm(config, path)
            metrics[role], details[role] = evaluate_llm(model, config, options, embedder, say)
            del model
    else:
        backend = "transformers" if config.asr.backend == "transformers" else "ct2"
        runs = [("candidate", str(candidate.serving_path(backend))),
                ("baseline", str(baseline.serving_path(backend)) if baseline else None)]
        for role, path in runs:
            metrics[role] = evaluate_asr(path or config.asr.model, config, options, say)
    passed, gates = judge(options.gates, metrics["candidate"], metrics["baseline"])
    baseline_name = str(baseline.root) if baseline else (
        config.llm.model if candidate.kind == "llm" else config.asr.model)
    return Verdict(candidate.kind, str(candidate.root), baseline_name, passed, metrics, gates,
                   details)
