"""A verification verdict as a person reads it: Markdown or HTML with a chart, plus JSON.

The chart is plain SVG written here (no plotting library needed): one pair
of bars per metric, candidate beside baseline, so a regression is visible
at a glance. HTML carries it inline; Markdown links to it beside the report.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from training.verify import Verdict

PERCENT = {"intent_accuracy", "intent_macro_f1", "oos_recall", "slot_f1", "scenario_pass_rate"}
CHART_WIDTH, BAR_H, GAP = 640, 14, 12


def _fmt(metric: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if metric in PERCENT:
        return f"{100 * value:.1f} %"
    if metric.startswith("wer"):
        return f"{value:.2f} %"
    if metric.endswith("_ms"):
        return f"{value:.0f} ms"
    return f"{value:.3g}"


def chart_svg(verdict: Verdict) -> str:
    """Candidate (dark) and baseline (light) bars, each metric scaled to the larger of the two."""
    cand, base = verdict.metrics["candidate"], verdict.metrics["baseline"]
    names = [g["metric"] for g in verdict.gates if g["status"] != "skipped"]
    label_w, height = 170, len(names) * (2 * BAR_H + GAP) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" '
             f'height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect x="{label_w}" y="4" width="10" height="10" fill="#1f4e79"/>'
             f'<text x="{label_w + 14}" y="13">candidate</text>'
             f'<rect x="{label_w + 90}" y="4" width="10" height="10" fill="#9dc3e6"/>'
             f'<text x="{label_w + 104}" y="13">baseline</text>']
    y = 26
    span = CHART_WIDTH - label_w - 90
    for name in names:
        values = [v for v in (cand.get(name), base.get(name)) if isinstance(v, int | float)]
        top = max(values + [1e-9])
        parts.append(f'<text x="0" y="{y + BAR_H + 4}">{html.escape(name)}</text>')
        for offset, value, colour in ((0, cand.get(name), "#1f4e79"),
                                      (BAR_H, base.get(name), "#9dc3e6")):
            if not isinstance(value, int | float):
                continue
            width = max(1.0, span * value / top)
            parts.append(f'<rect x="{label_w}" y="{y + offset}" width="{width:.1f}" '
                         f'height="{BAR_H - 2}" fill="{colour}"/>')
            parts.append(f'<text x="{label_w + width + 4:.1f}" y="{y + offset + BAR_H - 4}">'
                         f'{html.escape(_fmt(name, value))}</text>')
        y += 2 * BAR_H + GAP
    parts.append("</svg>")
    return "\n".join(parts)


def _rows(verdict: Verdict) -> list[list[str]]:
    rows = []
    for gate in verdict.gates:
        name = gate["metric"]
        allowed = (f"{100 * gate['tolerance']:.0f} % of baseline" if gate["relative"]
                   else _fmt(name, gate["tolerance"]))
        rows.append([name, _fmt(name, gate["candidate"]), _fmt(name, gate["baseline"]),
                     allowed, gate["status"].upper() if gate["status"] == "fail"
                     else gate["status"], gate.get("why", "")])
    return rows


HEAD = ["metric", "candidate", "baseline", "allowed regression", "gate", "why"]


def markdown(verdict: Verdict, chart_name: str) -> str:
    lines = [f"# Verification: {'PASSED' if verdict.passed else 'FAILED'}", "",
             f"- kind: {verdict.kind}", f"- candidate: `{verdict.candidate}`",
             f"- baseline: `{verdict.baseline}`", "",
             "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(verdict)]
    lines += ["", f"![metrics]({chart_name})", ""]
    for role in ("candidate", "baseline"):
        info = verdict.details.get(role) or {}
        if info.get("errors"):
            lines += [f"## {role}: intent errors ({len(info['errors'])})", ""]
            lines += [f"- {e['text']!r}: expected {e['gold']}, got {e['predicted']}"
                      for e in info["errors"][:40]]
            lines.append("")
        if info.get("scenario_failures"):
            lines += [f"## {role}: failed scenarios", ""]
            lines += [f"- {name}" for name in info["scenario_failures"]]
            lines.append("")
    return "\n".join(lines)


def html_page(verdict: Verdict) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in HEAD)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in _rows(verdict))
    status = "PASSED" if verdict.passed else "FAILED"
    errors = ""
    for role in ("candidate", "baseline"):
        info = verdict.details.get(role) or {}
        if info.get("errors"):
            items = "".join(f"<li>{html.escape(e['text'])}: expected {e['gold']}, got "
                            f"{e['predicted']}</li>" for e in info["errors"][:40])
            errors += f"<h2>{role}: intent errors</h2><ul>{items}</ul>"
    return (f"<!doctype html><meta charset='utf-8'><title>Verification {status}</title>"
            f"<style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;border:1px solid #ccc}}"
            f"</style><h1>Verification: {status}</h1>"
            f"<p>candidate <code>{html.escape(verdict.candidate)}</code>, baseline "
            f"<code>{html.escape(verdict.baseline)}</code></p>"
            f"<table><tr>{cells}</tr>{body}</table>{chart_svg(verdict)}{errors}")


def write_report(verdict: Verdict, path: Path) -> list[Path]:
    """``path`` as .md (with a .svg beside it) or .html, and the JSON next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = [path]
    if path.suffix.lower() in (".html", ".htm"):
        path.write_text(html_page(verdict), encoding="utf-8")
    else:
        chart = path.with_suffix(".svg")
        chart.write_text(chart_svg(verdict), encoding="utf-8")
        path.write_text(markdown(verdict, chart.name), encoding="utf-8")
        written.append(chart)
    data = path.with_suffix(".json")
    data.write_text(json.dumps(verdict.to_json(), indent=2, default=str) + "\n")
    written.append(data)
    return written
