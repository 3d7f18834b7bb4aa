"""LLM training on the real SmolLM2-135M: SFT (LoRA, full), resume, export, pre-training,
the zero-shot recogniser, and verification with gates.

The model is trained once per session (a few steps, short sequences) and the
export reused by every test that needs a trained model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nlu import turn_format
from nlu.domain import load_domain
from training.export import IncompleteModel, open_exported
from training.finetune import FinetuneOptions, finetune, sft_sequences
from training.gates import load_gates
from training.loop import LoopOptions, TrainingInterrupted, latest_checkpoint
from training.task_examples import TurnExample, domain_split, without_examples
from voicedesk.config import LlmConfig, load_config
from voicedesk.models.prepare import ModelStore

SCENARIO = """
calls:
  - name: a person, please
    turns:
      - say: I want to talk to a real person please
        expect: {intent: speak_to_agent, handoff: true}
"""


def small_train_set() -> list[TurnExample]:
    """Two examples of each of six intents: enough to see learning, cheap to step."""
    wanted = ("check_balance", "report_outage", "speak_to_agent", "roaming", "goodbye",
              "out_of_scope")
    train = domain_split(load_domain("telecom"), "train")
    return [e for name in wanted for e in [x for x in train if x.intent == name][:2]]


def lora_options(**loop: int) -> FinetuneOptions:
    return FinetuneOptions(method="lora", spoken_variants=False, export=False,
                           loop=LoopOptions(max_steps=4, batch_size=4, learning_rate=1e-3,
                                            save_every=2, progress=False, **loop))


@pytest.fixture(scope="session")
def base_llm(models_dir: Path) -> str:
    return ModelStore(models_dir).llm_hf("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def lora_runs(base_llm: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run stopped after 2 of 4 steps and resumed, one run straight through, exported."""
    root = tmp_path_factory.mktemp("lora")
    data = small_train_set()
    with pytest.raises(TrainingInterrupted) as stop:
        finetune(base_llm, data, root / "resumed", lora_options(stop_after=2))
    checkpoint = latest_checkpoint(root / "resumed")
    options = lora_options()
    options.export = True
    resumed = finetune(base_llm, data, root / "resumed", options)
    straight = finetune(base_llm, data, root / "straight", lora_options())
    return {"stop": stop.value, "checkpoint": checkpoint, "resumed": resumed,
            "straight": straight, "root": root}


def test_an_interrupted_run_resumes_from_its_checkpoint(lora_runs: dict) -> None:
    assert lora_runs["stop"].step == 2
    assert lora_runs["checkpoint"].name == "step-0000002"
    resumed, straight = lora_runs["resumed"].loop, lora_runs["straight"].loop
    assert resumed.resumed_from == 2 and resumed.steps == straight.steps == 4
    # The same batches in the same order from the restored optimizer: the same losses.
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-3)


def test_lora_training_lowers_the_loss(lora_runs: dict) -> None:
    losses = lora_runs["straight"].loop.losses
    assert losses[-1] < losses[0] * 0.8


def test_a_checkpoint_of_other_data_is_not_resumed(lora_runs: dict, base_llm: str) -> None:
    from voicedesk.errors import VoicedeskError

    other = small_train_set()[:6]
    with pytest.raises(VoicedeskError, match="different run"):
        finetune(base_llm, other, lora_runs["root"] / "straight", lora_options())


def test_sft_targets_start_with_the_token_choose_scores(base_llm: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_llm)
    example = TurnExample("my internet is down", "report_outage", {"postcode": "AB1"})
    [seq] = sft_sequences([example], tokenizer, FinetuneOptions())
    prompt_ids = tokenizer(turn_format.prompt(example.text), add_special_tokens=False)[
        "input_ids"]
    first = seq.labels[len(prompt_ids)]
    assert seq.ids[:len(prompt_ids)] == prompt_ids
    assert set(seq.labels[:len(prompt_ids)]) == {-100}
    assert first == tokenizer(" report_outage", add_special_tokens=False)["input_ids"][0]
    assert seq.labels[-1] == tokenizer.eos_token_id


def test_export_loads_in_both_engines_with_the_turn_marker(lora_runs: dict) -> None:
    from nlu.llm.ctranslate2_engine import CTranslate2Engine
    from nlu.llm.transformers_engine import TransformersEngine

    exported = open_exported(lora_runs["resumed"].model.root)
    assert exported.kind == "llm" and exported.task_format == turn_format.FORMAT
    ct2 = CTranslate2Engine(str(exported.serving_path("ctranslate2")), LlmConfig())
    hf = TransformersEngine(str(exported.serving_path("transformers")), LlmConfig())
    for engine in (ct2, hf):
        assert turn_format.read_marker(engine.model_ref) is not None
    # The same weights in both: the same choice where the model is sure, with close
    # log-probabilities. (A few LoRA steps leave every intent name improbable, -10 nats
    # and below, where int8 rounding moves scores by a nat or two: no test of the export.)
    prompt = "The capital of France is"
    options = [" Paris", " London", " a banana"]
    int8, fp32 = ct2.score(prompt, options), hf.score(prompt, options)
    assert int8.index(max(int8)) == fp32.index(max(fp32)) == 0, (int8, fp32)
    assert abs(int8[0] - fp32[0]) < 1.0, (int8, fp32)


def test_a_finetuned_model_is_asked_zero_shot_over_every_intent(lora_runs: dict,
                                                                models_dir: Path) -> None:
    from nlu.embeddings import SentenceEmbedder
    from nlu.llm.ctranslate2_engine import CTranslate2Engine
    from nlu.understanding import IntentRecognizer

    store = ModelStore(models_dir)
    embedder = SentenceEmbedder(store.embeddings("all-minilm-l6-v2"))
    domain = load_domain("telecom")
    tuned = CTranslate2Engine(str(open_exported(lora_runs["resumed"].model.root)
                                  .serving_path("ctranslate2")), LlmConfig())
    untuned = CTranslate2Engine(store.llm_ct2("smollm2-135m-instruct"), LlmConfig())
    zero_shot = IntentRecognizer(tuned, embedder, domain)
    few_shot = IntentRecognizer(untuned, embedder, domain)
    assert (zero_shot.mode, few_shot.mode) == ("zero-shot", "few-shot")
    # A model promoted while calls run is swapped in with its own prompt format.
    assert few_shot.with_llm(tuned).mode == "zero-shot"
    assert zero_shot.with_llm(untuned).mode == "few-shot"
    result = zero_shot.understand("I want to talk to a real person, not a machine")
    assert set(result.candidates) == set(domain.intents)
    assert result.intent == "speak_to_agent"
    assert len(few_shot.understand("my internet is down").candidates) < len(domain.intents)


def test_full_finetuning_updates_every_weight_and_lowers_the_loss(base_llm: str,
                                                                 tmp_path: Path) -> None:
    from safetensors import safe_open

    data = small_train_set()[:4]
    options = FinetuneOptions(method="full", spoken_variants=False, export=False,
                              loop=LoopOptions(max_steps=2, batch_size=4, learning_rate=5e-5,
                                               progress=False))
    outcome = finetune(base_llm, data, tmp_path / "full", options)
    assert outcome.loop.losses[-1] < outcome.loop.losses[0]
    with safe_open(str(latest_checkpoint(tmp_path / "full") / "trainable.safetensors"),
                   "pt") as saved:
        names = set(saved.keys())
    assert "model.layers.0.self_attn.q_proj.weight" in names and len(names) > 200


def test_pretraining_reports_loss_and_records_the_run(base_llm: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from training.pretrain import PretrainOptions, pretrain
    from training.runs import RunLog
    from training.store.migrate import upgrade
    from training.store.schema import TrainingRun

    texts = [p.read_text() for p in sorted(
        (Path(load_domain("telecom").knowledge_dir)).glob("*.md"))]
    db = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(db)
    options = PretrainOptions(method="lora", block_size=64, export=False,
                              loop=LoopOptions(max_steps=2, batch_size=2, learning_rate=3e-4,
                                               progress=False))
    log = RunLog(db, tmp_path / "pre", "pretrain", "smollm2-135m-instruct", {}, None)
    seen: list[tuple[int, int, float]] = []
    outcome = pretrain(base_llm, texts, tmp_path / "pre", options, log,
                       on_step=lambda *s: seen.append(s))
    assert [s[:2] for s in seen] == [(1, 2), (2, 2)]
    assert all(loss > 0 for *_, loss in seen)
    from sqlalchemy.orm import Session

    with Session(db) as session:
        row = session.get(TrainingRun, outcome.run_id)
        assert row is not None and row.status == "completed" and row.step == 2
        assert row.kind == "pretrain" and row.metrics["final_loss"] > 0


def test_an_incomplete_candidate_is_rejected_before_evaluation(lora_runs: dict,
                                                               tmp_path: Path) -> None:
    from training.verify import VerifyOptions, verify

    broken = tmp_path / "broken"
    shutil.copytree(lora_runs["resumed"].model.root, broken, copy_function=_link)
    (broken / "ct2-int8" / "model.bin").unlink()
    config = load_config(environ={"VOICEDESK_HOME": str(tmp_path)})
    with pytest.raises(IncompleteModel, match=r"incomplete: missing or empty ct2-int8/model\.bin"):
        verify(broken, config, VerifyOptions(turns=small_train_set()))
    (broken / "voicedesk_model.json").unlink()
    with pytest.raises(IncompleteModel, match="has no voicedesk_model.json"):
        open_exported(broken)


def _link(src: str, dst: str) -> None:
    import os

    os.link(src, dst)


@pytest.fixture(scope="session")
def verdict(lora_runs: dict, models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The trained candidate against the untuned model on real held-out turns and a scenario."""
    from training.verify import VerifyOptions, verify

    home = tmp_path_factory.mktemp("verify-home")
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    scenarios = home / "scenarios.yaml"
    scenarios.write_text(SCENARIO)
    config = load_config(environ={"VOICEDESK_HOME": str(home)})
    turns = [e for e in domain_split(load_domain("telecom"), "test")][::5]
    return verify(lora_runs["resumed"].model.root, config,
                  VerifyOptions(turns=turns, scenarios=scenarios))


def test_verification_measures_both_models_on_the_same_turns(verdict) -> None:
    cand, base = verdict.metrics["candidate"], verdict.metrics["baseline"]
    assert cand["turns"] == base["turns"] >= 8
    assert (cand["mode"], base["mode"]) == ("zero-shot", "few-shot")
    for side in (cand, base):
        assert 0 <= side["intent_accuracy"] <= 1 and 0 <= side["intent_macro_f1"] <= 1
        assert side["scenario_pass_rate"] in (0.0, 1.0) and side["latency_p50_ms"] > 0
        assert side["oos_recall"] is not None


def test_gates_decide_on_the_measured_metrics(verdict, tmp_path: Path) -> None:
    from training.gates import judge

    lenient = tmp_path / "lenient.toml"
    lenient.write_text("\n".join(f"[{m}]\ntolerance = 1000.0\nrelative = false" for m in (
        "intent_accuracy", "intent_macro_f1", "oos_recall", "scenario_pass_rate",
        "latency_p50_ms")))
    strict = tmp_path / "strict.toml"
    strict.write_text("[intent_accuracy]\ntolerance = 1000.0\nminimum = 1.01\n")
    passed, gates = judge(load_gates(lenient), verdict.metrics["candidate"],
                          verdict.metrics["baseline"])
    assert passed and {g["metric"] for g in gates} >= {"intent_accuracy", "scenario_pass_rate"}
    passed, gates = judge(load_gates(strict), verdict.metrics["candidate"],
                          verdict.metrics["baseline"])
    failed = [g for g in gates if g["status"] == "fail"]
    assert not passed and failed[0]["metric"] == "intent_accuracy"
    assert "below the minimum 1.01" in failed[0]["why"]


def test_the_report_is_written_as_markdown_html_and_json(verdict, tmp_path: Path) -> None:
    from training.verify_report import write_report

    written = write_report(verdict, tmp_path / "report.md")
    assert [p.suffix for p in written] == [".md", ".svg", ".json"]
    assert "| intent_accuracy |" in written[0].read_text()
    assert written[1].read_text().startswith("<svg") and "<rect" in written[1].read_text()
    assert json.loads(written[2].read_text())["passed"] == verdict.passed
    page = write_report(verdict, tmp_path / "report.html")[0].read_text()
    assert "<table>" in page and "<svg" in page


def test_domain_split_holds_out_examples_from_retrieval() -> None:
    domain = load_domain("telecom")
    train, test = domain_split(domain, "train"), domain_split(domain, "test")
    assert {e.intent for e in test} == set(domain.intents)
    assert not {e.text for e in train} & {e.text for e in test}
    reduced = without_examples(domain, test)
    remaining = {x for i in reduced.intents.values() for x in i.examples}
    assert not remaining & {e.text for e in test}
