"""The audit's summaries: the effects table and bar chart of one organism's audit, and `opct audit
--organism all`: every organism into one method x organism heatmap against the greedy control."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opct.audit.organisms import ORGANISMS, Organism

EFFECT_PLOT = "audit_effects.png"


def _fmt_delta(d: dict[str, Any]) -> str:
    if d.get("value") is None:
        return "–"
    return f"{d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"


def metric_label(org: Organism) -> str:
    return org.metric.replace("_", " ")


def effects_rows(org: Organism, effects: dict[str, Any], chosen: list[str], skipped: dict[str, str] | None,
                 kinds: dict[str, str]) -> dict[str, Any]:
    """The effects table: one row per method (its kind from `kinds`), the organism's own against the base."""
    kinds = {"organism": "vs base", **kinds}
    key = f"delta_{org.metric}"
    rows = []
    for m in ["organism", *chosen]:
        if m in effects:
            e = effects[m]
            g = e.get("vs_greedy")
            rows.append([m, kinds[m], _fmt_delta(e[key]), str(e[key]["n"]), e["verdict"],
                         f"{_fmt_delta(g[key])}: {g['verdict']}" if g else "–"])
        elif m in (skipped or {}):
            rows.append([m, kinds[m], "–", "–", f"not trained: {skipped[m]}", "–"])
    return {"headers": ["Method", "Kind", f"Change in {metric_label(org)} [95% CI]", "n", "Verdict", "Versus greedy"],
            "rows": rows}


def effects_table(results: dict[str, Any]) -> str:
    from opct.report import _md_table

    sec = results["lead_sections"][0]
    return _md_table(sec["headers"], sec["rows"])


def plot_effects(results: dict[str, Any], path: str | Path) -> Path | None:
    """Horizontal bars: each method's change in the misalignment rate from the organism, with its CI."""
    from opct.report import _new_figure

    key = f"delta_{results['metric']}"
    names = [m for m in results["method_order"] if m in results["effects"] and m != "organism"]
    deltas = [results["effects"][m][key] for m in names]
    if not names or any(d.get("value") is None for d in deltas):
        return None
    colours = {"amplified": "#c0392b", "suppressed": "#2471a3", "no clear change": "#999999"}
    fig = _new_figure((6.4, 0.45 * len(names) + 1.4))
    ax = fig.add_subplot()
    ys = list(range(len(names)))[::-1]
    values = [d["value"] for d in deltas]
    err = [[v - d["ci_low"] for v, d in zip(values, deltas)], [d["ci_high"] - v for v, d in zip(values, deltas)]]
    ax.barh(ys, values, xerr=err, color=[colours[results["effects"][m]["verdict"]] for m in names], capsize=3)
    ax.set_yticks(ys, [f"{m} ({results['kinds'][m]})" for m in names])
    ax.axvline(0, color="black", linewidth=0.8)
    if "greedy" in names:  # what further fine-tuning alone does: the line other methods are read against
        ax.axvline(values[names.index("greedy")], color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xlabel(f"change in {results['metric'].replace('_', ' ')} from the organism")
    ax.set_title("red: amplified, blue: suppressed, grey: no clear change (95% CI);\n"
                 "dashed: the greedy control", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def effects_summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Method x organism: the effect against greedy (the effect against the organism for greedy
    itself), as {"cells": {organism: {method: {delta, verdict}}}, "headers", "rows"}."""
    methods = list(dict.fromkeys(m for r in results.values() for m in r["method_order"]
                                 if m not in ("base", "organism")))
    cells: dict[str, dict[str, Any]] = {}
    for org, r in results.items():
        key = f"delta_{r['metric']}"
        for m in methods:
            e = r["effects"].get(m)
            if e is None:
                continue
            against = e.get("vs_greedy") or e
            cells.setdefault(org, {})[m] = {"delta": against[key], "verdict": against["verdict"],
                                             "against": "greedy" if "vs_greedy" in e else "organism"}
    paper = {o: ORGANISMS[o].paper_direction or "–" for o in results}
    # a profile may audit organisms on different models (AuditProfile.per_organism)
    rows = [[org, results[org]["model"].removeprefix("embedded:"), results[org]["metric"].replace("_", " "), paper[org],
             *[(f"{_fmt_delta(c['delta'])} {c['verdict']}" if (c := cells.get(org, {}).get(m)) else "–")
               for m in methods]] for org in results]
    return {"methods": methods, "cells": cells, "paper": paper,
            "headers": ["Organism", "Model", "Rate", "Paper", *methods], "rows": rows}


def plot_heatmap(summary: dict[str, Any], path: str | Path) -> Path | None:
    """Organisms x methods, coloured by the effect against greedy (red: amplified, blue: suppressed),
    each cell labelled with the change and a mark when it has a verdict (amplified / suppressed)."""
    from opct.report import _new_figure

    orgs, methods = list(summary["cells"]), summary["methods"]
    if not orgs or not methods:
        return None
    values = [[(summary["cells"][o].get(m) or {}).get("delta", {}).get("value") for m in methods] for o in orgs]
    fig = _new_figure((1.1 * len(methods) + 2.5, 0.7 * len(orgs) + 1.6))
    ax = fig.add_subplot()
    flat = [abs(v) for row in values for v in row if v is not None] or [1.0]
    scale = max(flat) or 1.0
    grid = [[float("nan") if v is None else v for v in row] for row in values]
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
    for i, o in enumerate(orgs):
        for j, m in enumerate(methods):
            cell = summary["cells"][o].get(m)
            if cell and cell["delta"].get("value") is not None:
                mark = "*" if cell["verdict"] in ("amplified", "suppressed") else ""
                dark = abs(cell["delta"]["value"]) > 0.6 * scale  # white on the deep colours
                ax.text(j, i, f"{cell['delta']['value']:+.2f}{mark}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
    ax.set_yticks(range(len(orgs)), [f"{o} (paper: {summary['paper'][o]})" for o in orgs])
    fig.colorbar(image, ax=ax, label="change vs greedy control")
    ax.set_title("Effect on each misalignment\n(* a verdict: 95% interval excludes 0, sign-flip p < 0.05)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # the long organism labels would push the title and colour bar off
    return Path(path)


def warnings_section(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines listing each organism's report warnings (none: no lines)."""
    warned = [f"- **{org}**: {w}" for org, r in results.items() for w in r.get("warnings") or []]
    return ["## Warnings", "", *warned, ""] if warned else []
