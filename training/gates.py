"""Verification gates: no metric may be worse than the baseline's by more than its tolerance.

A gate compares a candidate's metric with the promoted model's on the same
held-out data. Tolerances are in the metric's own unit (accuracy 0.01 is one
point; WER 1.0 is one WER point) or, when ``relative``, a fraction of the
baseline (latency 0.25: up to 25 % slower). An optional ``minimum`` (or
``maximum`` for lower-is-better metrics) is an absolute bar besides.
Operators set them in a TOML file: ``[intent_accuracy] tolerance = 0.005``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from voicedesk.errors import ConfigError


@dataclass(frozen=True)
class Gate:
    metric: str
    higher_is_better: bool
    tolerance: float
    relative: bool = False
    bound: float | None = None  # minimum (higher is better) or maximum

    def check(self, candidate: float | None, baseline: float | None) -> dict[str, Any]:
        """One gate's verdict; a metric neither model was measured on is skipped."""
        out: dict[str, Any] = {"metric": self.metric, "candidate": candidate,
                               "baseline": baseline, "tolerance": self.tolerance,
                               "relative": self.relative, "bound": self.bound}
        if candidate is None:
            return {**out, "status": "skipped", "why": "not measured on this data"}
        problems = []
        if baseline is not None:
            allowed = self.tolerance * abs(baseline) if self.relative else self.tolerance
            worse = baseline - candidate if self.higher_is_better else candidate - baseline
            out["change"] = candidate - baseline
            if worse > allowed + 1e-12:
                problems.append(f"{worse:.4g} worse than the baseline {baseline:.4g} "
                                f"(allowed {allowed:.4g})")
        if self.bound is not None:
            if self.higher_is_better and candidate < self.bound:
                problems.append(f"below the minimum {self.bound:.4g}")
            if not self.higher_is_better and candidate > self.bound:
                problems.append(f"above the maximum {self.bound:.4g}")
        return {**out, "status": "fail" if problems else "pass", "why": "; ".join(problems)}


DEFAULT_GATES: dict[str, Gate] = {g.metric: g for g in (
    Gate("intent_accuracy", True, 0.01),
    Gate("intent_macro_f1", True, 0.02),
    Gate("oos_recall", True, 0.05),
    Gate("slot_f1", True, 0.01),
    Gate("scenario_pass_rate", True, 0.0),
    Gate("latency_p50_ms", False, 0.25, relative=True),
    Gate("wer", False, 0.0),
    Gate("wer_general", False, 1.0),
    Gate("rtf", False, 0.25, relative=True),
)}


def load_gates(path: Path | None) -> dict[str, Gate]:
    """The default gates, with a TOML file's settings over them."""
    gates = dict(DEFAULT_GATES)
    if path is None:
        return gates
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"gate file {path} cannot be read: {exc}") from None
    data = data.get("gates", data)
    for metric, settings in data.items():
        if metric not in gates:
            raise ConfigError(f"{path}: unknown metric [{metric}]; known: "
                              f"{', '.join(sorted(gates))}")
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: [{metric}] must be a table of tolerance, relative, "
                              f"minimum/maximum")
        unknown = set(settings) - {"tolerance", "relative", "minimum", "maximum"}
        if unknown:
            raise ConfigError(f"{path}: [{metric}] has unknown keys {sorted(unknown)}")
        gate = gates[metric]
        bound = settings.get("minimum" if gate.higher_is_better else "maximum", gate.bound)
        try:
            gates[metric] = replace(
                gate, tolerance=float(settings.get("tolerance", gate.tolerance)),
                relative=bool(settings.get("relative", gate.relative)),
                bound=None if bound is None else float(bound))
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: [{metric}] values must be numbers") from None
    return gates


def judge(gates: dict[str, Gate], candidate: dict[str, Any], baseline: dict[str, Any]
          ) -> tuple[bool, list[dict[str, Any]]]:
    results = [g.check(candidate.get(name), baseline.get(name)) for name, g in gates.items()
               if name in candidate or name in baseline]
    return all(r["status"] != "fail" for r in results), results
