"""A domain pack: the intents, examples and prompts an operator edits without code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlu.slots import SlotSpec
from voicedesk.errors import ConfigError

PACKS = Path(__file__).parent / "domain"
STEP_KINDS = {"verify", "ask", "lookup", "create_ticket", "update", "say", "knowledge",
              "handoff", "end"}
LOOKUPS = {"bill", "usage", "outage", "ticket", "customer_tickets"}


@dataclass(frozen=True)
class Intent:
    name: str
    description: str
    examples: tuple[str, ...]
    reply: str
    offer: str = ""  # offering the request after answering a question about it


@dataclass(frozen=True)
class DomainPack:
    name: str
    intents: dict[str, Intent]
    prompts: dict[str, str]
    slots: dict[str, SlotSpec] = field(default_factory=dict)
    flows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    plans: list[dict[str, Any]] = field(default_factory=list)
    work_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    knowledge_dir: Path | None = None
    # Public corpora's labels that mean a catalogue intent: corpus -> their label -> ours.
    general_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def plan(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.plans if p["name"].lower() == name.lower()), None)

    def prompt(self, key: str, **values: str) -> str:
        return self.prompts[key].format(company=self.prompts.get("company", ""), **values)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"domain file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"domain file {path} must be a mapping at the top level")
    return data


def load_domain(name_or_path: str) -> DomainPack:
    """A pack by name (a folder under nlu/domain) or by path."""
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        folder = PACKS / name_or_path
    if not (folder / "intents.yaml").is_file():
        available = ", ".join(sorted(p.name for p in PACKS.iterdir() if p.is_dir()))
        raise ConfigError(f"domain pack {name_or_path!r} not found (needs intents.yaml); "
                          f"bundled packs: {available}")
    raw = _read_yaml(folder / "intents.yaml").get("intents") or {}
    intents = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or not spec.get("examples"):
            raise ConfigError(f"{folder / 'intents.yaml'}: intent {name!r} needs a description, "
                              f"examples and a reply")
        intents[name] = Intent(name, str(spec.get("description", name)),
                               tuple(str(e) for e in spec["examples"]), str(spec.get("reply", "")),
                               str(spec.get("offer", "")))
    if "out_of_scope" not in intents:
        raise ConfigError(f"{folder / 'intents.yaml'}: the catalogue must define out_of_scope")
    prompts = {k: str(v) for k, v in _read_yaml(folder / "prompts.yaml").items()}
    slots = _load_slots(folder / "slots.yaml") if (folder / "slots.yaml").is_file() else {}
    plans = _optional(folder / "plans.yaml", "plans", [])
    work_orders = _work_orders(folder / "work_orders.yaml")
    flows = _optional(folder / "flows.yaml", "flows", {})
    general = _general_labels(folder / "general_labels.yaml", intents)
    pack = DomainPack(folder.name, intents, prompts, slots, flows, plans, work_orders,
                      folder / "knowledge" if (folder / "knowledge").is_dir() else None,
                      general)
    if flows:
        _check_flows(pack, folder / "flows.yaml")
    return pack


def _work_orders(path: Path) -> dict[str, dict[str, Any]]:
    """Work-order types; ``called`` must be a list of words, ``follow_up`` a sentence."""
    orders = _optional(path, "work_orders", {})
    if not isinstance(orders, dict):
        raise ConfigError(f"{path}: work_orders must map each type to its settings")
    for kind, spec in orders.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: work order {kind!r} must be a mapping")
        called = spec.get("called", [])
        if not isinstance(called, list) or not all(isinstance(w, str) and w for w in called):
            raise ConfigError(f"{path}: work order {kind!r}: called must be a list of words")
        if not isinstance(spec.get("follow_up", ""), str):
            raise ConfigError(f"{path}: work order {kind!r}: follow_up must be a sentence")
    return orders


def _optional(path: Path, key: str, default: Any) -> Any:
    return (_read_yaml(path).get(key) or default) if path.is_file() else default


def _general_labels(path: Path, intents: dict[str, Intent]) -> dict[str, dict[str, str]]:
    raw = _optional(path, "general_labels", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: general_labels must map a corpus name to its labels")
    out: dict[str, dict[str, str]] = {}
    for corpus, labels in raw.items():
        if not isinstance(labels, dict):
            raise ConfigError(f"{path}: {corpus!r} must map its labels to catalogue intents")
        for label, intent in labels.items():
            if intent not in intents:
                raise ConfigError(f"{path}: {corpus} label {label!r} maps to {intent!r}, "
                                  f"which is not an intent in intents.yaml")
        out[str(corpus)] = {str(k): str(v) for k, v in labels.items()}
    return out


def _load_slots(path: Path) -> dict[str, SlotSpec]:
    known = set(SlotSpec.__dataclass_fields__) - {"name"}
    specs = {}
    for name, raw in (_read_yaml(path).get("slots") or {}).items():
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{path}: slot {name!r} has unknown keys {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        specs[name] = SlotSpec(name=name, **values)
    return specs


def _check_flows(pack: DomainPack, path: Path) -> None:
    """Fail at load time, naming the flow and step, rather than mid-call."""
    for intent in pack.intents:
        if intent not in pack.flows:
            raise ConfigError(f"{path}: intent {intent!r} has no flow")
    for name, steps in pack.flows.items():
        if name not in pack.intents:
            raise ConfigError(f"{path}: flow {name!r} is not an intent in intents.yaml")
        for i, step in enumerate(steps, 1):
            kind = step if isinstance(step, str) else next(iter(step), None)
            where = f"{path}: flow {name!r} step {i}"
            if kind not in STEP_KINDS:
                raise ConfigError(f"{where}: unknown step {kind!r}; known: {sorted(STEP_KINDS)}")
            arg = step.get(kind) if isinstance(step, dict) else None
            if kind == "ask":
                slot = arg["slot"] if isinstance(arg, dict) else arg
                if slot not in pack.slots:
                    raise ConfigError(f"{where}: asks for unknown slot {slot!r}")
            if kind == "lookup" and arg not in LOOKUPS:
                raise ConfigError(f"{where}: unknown lookup {arg!r}; known: {sorted(LOOKUPS)}")
            if kind == "create_ticket" and arg.get("type") not in pack.work_orders:
                raise ConfigError(f"{where}: unknown work-order type {arg.get('type')!r}")
