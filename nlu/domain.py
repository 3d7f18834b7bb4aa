"""A domain pack: the intents, examples and prompts an operator edits without code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from voicedesk.errors import ConfigError

PACKS = Path(__file__).parent / "domain"


@dataclass(frozen=True)
class Intent:
    name: str
    description: str
    examples: tuple[str, ...]
    reply: str


@dataclass(frozen=True)
class DomainPack:
    name: str
    intents: dict[str, Intent]
    prompts: dict[str, str]

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
                               tuple(str(e) for e in spec["examples"]), str(spec.get("reply", "")))
    if "out_of_scope" not in intents:
        raise ConfigError(f"{folder / 'intents.yaml'}: the catalogue must define out_of_scope")
    prompts = {k: str(v) for k, v in _read_yaml(folder / "prompts.yaml").items()}
    return DomainPack(folder.name, intents, prompts)
