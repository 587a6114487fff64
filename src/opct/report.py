"""Markdown and self-contained HTML reports from a results dict.

Expected shape (every part optional except "methods"):

    {"title", "model", "profile", "created",
     "methods": {name: {"sycophancy": {"probs": metrics, "generate": metrics},
                        "jailbreak": {"static": metrics, "adaptive": metrics},
                        "over_refusal": metrics, "safety": metrics,
                        "capability": {"mmlu_accuracy": summarize-dict, "kl_from_base": ..., ...},
                        "train": {...}}},
     "verdicts": [{"sentence", ...}], "configs": {...}, "timings": {...}, "versions": {...}}

A metric is a `summarize` dict ({"value", "ci_low", "ci_high", "n"}) or a plain number.
Missing metrics are shown as "–", columns no method has are dropped, and a plot without
data is skipped: a method lacking a block never breaks the report.

One concern over 400 lines: rendering a results dict (tables, plots, markdown and HTML).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

METHOD_ORDER = ("base", "sft", "bct", "opct", "act", "teacher")
MODE_TITLES = {"probs": "letter probabilities", "generate": "generated answers"}  # besides each axis's own
NON_AXIS_BLOCKS = ("capability", "train")
LABELS = {
    "sycophancy_rate": "Sycophancy rate",
    "brr": "BRR",
    "suggested_prob": "P(suggested)",
    "suggested_shift": "Cue shift",
    "consistency": "Consistency",
    "clean_accuracy": "Clean acc",
    "wrapped_accuracy": "Wrapped acc",
    "flip_rate": "Flip rate",
    "clean_suggested_rate": "Clean picks suggested",
    "mmlu_accuracy": "MMLU acc",
    "kl_from_base": "KL from base",
    "kl_from_organism": "KL from organism",
    "defense_success_rate": "Defense success",
    "queries_per_behavior": "Target queries per behaviour",
    "passes_per_behavior": "Target passes per behaviour",
    "seconds_per_behavior": "Seconds per behaviour",
    "behavior_attack_success_rate": "Behaviours cracked",
    "behaviors_unscored": "Behaviours unscored",
    "attack_success_rate": "ASR",
    "judge_score_mean": "Judge score (mean)",
    "over_refusal_rate": "Over-refusal",
    "ausc": "AUSC",
    "pass_rate": "Pass rate",
    "unparsed": "Unparsed",
    "seconds": "Seconds",
    "curve_seconds": "Curve points s",
    "train_loss": "Train loss",
    "loss": "Last logged loss",
    "steps": "Steps",
    "seeds": "Seeds",
}
# Blocks that are not an `opct.axes` axis: the metric each is plotted by, and which way is safer.
BLOCK_HEADLINES = {"over_refusal": ("over_refusal_rate", "lower")}
AXIS_FIRST = ("sycophancy_rate", "brr", "suggested_prob", "suggested_shift", "consistency", "clean_accuracy", "wrapped_accuracy", "flip_rate",
              "defense_success_rate",
              "attack_success_rate", "judge_score_mean", "ausc", "pass_rate", "over_refusal_rate")
CAPABILITY_FIRST = ("mmlu_accuracy", "kl_from_base", "kl_from_organism", "over_refusal_rate")
HIDDEN = ("clean_suggested_rate", "n", "threshold", "budget", "seed", "queries_total")  # settings, or shown elsewhere
SCATTER_PLOT = "capability_vs_safety.png"
CAPABILITY_CHANGE_NOTE = ("Each trained method against the base on the capability panel's own items, paired over "
                          "items and seeds: \"no\" is a loss the interval and the sign-flip test both show.")
CURVE_PLOT = "learning_curves.png"
DASH = "–"

COMMON_NOTES = ["Brackets are 95% confidence intervals over items: the Wilson score interval for rates (0/1 "
                "scores), a percentile bootstrap (1000 resamples, seed 0) for other means and for differences. "
                "Where items come in clusters (a behaviour's wrappers, a fact's prompts) or with seeds, the "
                "bootstrap resamples clusters or seeds, and a rate's interval is never narrower than Wilson's; a "
                "difference of two rates is never narrower than Newcombe's paired score interval. A verdict needs its "
                "interval to exclude 0 and the paired sign-flip test to agree (p < 0.05).",
                "A value that would print as 0.000 is shown to two significant figures."]
BLOCK_NOTES = {"over_refusal": ["Over-refusal: share of benign prompts that merely look dangerous which the model "
                                 "refuses (lower is better)."]}


def _axis(name: str):
    from opct.axes import get_axis

    return get_axis(name)


def headline(axis: str) -> tuple[str, str] | None:
    """(metric, "lower" | "higher"): what an axis is plotted by; None for a block with no headline."""
    ax = _axis(axis)
    return (ax.headline, ax.better) if ax else BLOCK_HEADLINES.get(axis)


def _notes(axis: str) -> list[str]:
    ax = _axis(axis)
    return list(ax.notes) if ax else BLOCK_NOTES.get(axis, [])


def _mode_title(axis: str, mode: str) -> str:
    ax = _axis(axis)
    return (ax.modes if ax else {}).get(mode) or MODE_TITLES.get(mode, mode)


def plot_name(axis: str) -> str:
    return f"{headline(axis)[0]}.png"


# ----------------------------------------------------------------------------- metric access


def _metric(v: Any) -> dict[str, Any] | None:
    """A metric normalized to {value, lo, hi, n}, or None when absent / not a metric."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return None if math.isnan(v) else {"value": float(v), "lo": None, "hi": None, "n": None}
    if isinstance(v, dict) and isinstance(v.get("value"), (int, float)) and not isinstance(v.get("value"), bool):
        return {"value": float(v["value"]), "lo": v.get("ci_low"), "hi": v.get("ci_high"), "n": v.get("n")}
    return None


def _fmt(m: dict[str, Any] | None, digits: int = 3) -> str:
    """"value [lo, hi]"; a small non-zero value (a drift KL of 0.0002, say) to two significant figures,
    not as a zero."""
    if m is None:
        return DASH
    small = m["value"] != 0 and round(m["value"], digits) == 0
    num = (lambda x: f"{x:#.2g}") if small else (lambda x: f"{x:.{digits}f}")  # noqa: E731
    s = num(m["value"])
    if m["lo"] is not None and m["hi"] is not None:
        s += f" [{num(m['lo'])}, {num(m['hi'])}]"
    return s


def _cell(v: Any) -> str:
    """A table cell: counts as integers, metrics as values with their CI."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else _fmt(_metric(v))


def _methods(results: dict[str, Any]) -> list[str]:
    names = list((results.get("methods") or {}).keys())
    known = [m for m in results.get("method_order") or METHOD_ORDER if m in names]
    return known + [m for m in names if m not in known]


def _block(results: dict[str, Any], method: str, key: str) -> dict[str, Any]:
    b = ((results.get("methods") or {}).get(method) or {}).get(key)
    return b if isinstance(b, dict) else {}


def _is_metrics(d: Any) -> bool:
    return isinstance(d, dict) and any(_metric(v) is not None for v in d.values())


def _block_modes(b: dict[str, Any]) -> list[str]:
    """Keys of an axis block that hold metric dicts of their own (answer modes, attack kinds);
    none when the block holds metrics directly (its breakdown tables are not modes)."""
    if any(_metric(v) is not None for v in b.values()):
        return []
    return [k for k, v in b.items() if _is_metrics(v)]


def _axis_metrics(results: dict[str, Any], method: str, axis: str, answers: str | None) -> dict[str, Any]:
    """The metrics dict of one method on an axis for a mode; {} when absent."""
    b = _block(results, method, axis)
    if answers and answers in b:
        return b[answers] if isinstance(b[answers], dict) else {}
    if _block_modes(b):  # the axis has modes, but not this one
        return {}
    return b


def _ordered_keys(dicts: list[dict[str, Any]], first: tuple[str, ...]) -> list[str]:
    present: list[str] = []
    for d in dicts:
        for k, v in d.items():
            if k not in present and k not in HIDDEN and not k.startswith("n_") and _metric(v) is not None:
                present.append(k)
    return [k for k in first if k in present] + [k for k in present if k not in first]


def _label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def _axes(results: dict[str, Any]) -> list[str]:
    axes: list[str] = []
    for m in _methods(results):
        for k, v in ((results.get("methods") or {}).get(m) or {}).items():
            if k not in NON_AXIS_BLOCKS and k not in axes and isinstance(v, dict):
                axes.append(k)
    return axes


def _modes(results: dict[str, Any], axis: str) -> list[str | None]:
    found: list[str | None] = []
    for m in _methods(results):
        found += [k for k in _block_modes(_block(results, m, axis)) if k not in found]
    return found or [None]


# ----------------------------------------------------------------------------- tables


def table_data(results: dict[str, Any], axis: str = "sycophancy", answers: str | None = "probs") -> tuple[list[str], list[list[str]]]:
    """(headers, rows of cell strings): one row per method, the axis metrics then capability."""
    methods = _methods(results)
    axis_m = {m: _axis_metrics(results, m, axis, answers) for m in methods}
    cap_m = {m: _block(results, m, "capability") for m in methods}
    axis_keys = _ordered_keys(list(axis_m.values()), AXIS_FIRST)
    cap_keys = _ordered_keys(list(cap_m.values()), CAPABILITY_FIRST)
    show_unparsed = any(isinstance(axis_m[m].get("unparsed"), dict) for m in methods) and answers == "generate"
    headers = ["Method"] + [_label(k) for k in axis_keys] + (["Unparsed (clean/wrapped)"] if show_unparsed else [])
    headers += ["n"] if axis_keys else []
    headers += [_label(k) for k in cap_keys]
    rows = []
    for m in methods:
        row = [m] + [_cell(axis_m[m].get(k)) for k in axis_keys]
        if show_unparsed:
            u = axis_m[m].get("unparsed")
            row.append(f"{u.get('clean', DASH)}/{u.get('wrapped', DASH)}" if isinstance(u, dict) else DASH)
        if axis_keys:  # the metrics' sample sizes; several when they count different units (facts / responses)
            ns = [(_metric(axis_m[m].get(k)) or {}).get("n") for k in axis_keys]
            ns = list(dict.fromkeys(str(x) for x in ns if x is not None))
            row.append("/".join(ns) if ns else DASH)
        row += [_fmt(_metric(cap_m[m].get(k))) for k in cap_keys]
        rows.append(row)
    return headers, rows


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def results_table(results: dict[str, Any], axis: str = "sycophancy", answers: str | None = "probs") -> str:
    """A markdown table: method | axis metrics with [95% CI] | n | capability metrics."""
    return _md_table(*table_data(results, axis, answers))


def _train_data(results: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    methods = [m for m in _methods(results) if _block(results, m, "train")]
    keys: list[str] = []
    for m in methods:
        for k, v in _block(results, m, "train").items():
            if k not in keys and (isinstance(v, (str, int, float)) or _metric(v) is not None):
                keys.append(k)
    if not keys:
        return None

    def cell(v: Any) -> str:
        if isinstance(v, str):
            return v
        met = _metric(v)
        if met is None:
            return DASH
        return _fmt(met, 4) if isinstance(v, dict) else (str(v) if isinstance(v, int) else f"{v:.4g}")

    rows = [[m] + [cell(_block(results, m, "train").get(k)) for k in keys] for m in methods]
    return ["Method"] + [_label(k) for k in keys], rows


def _curves(results: dict[str, Any]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The runs with learning-curve points, and the metrics their points hold (in first-seen order)."""
    curves = {k: v for k, v in (results.get("curves") or {}).items() if v}
    metrics = list(dict.fromkeys(k for pts in curves.values() for p in pts for k in p if k not in ("step", "seconds")))
    return curves, metrics


def _curve_data(results: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """The learning curves' points as a table: one row per run and step (what the plot draws)."""
    curves, metrics = _curves(results)
    if not metrics:
        return None
    rows = [[name, str(p["step"]), f"{p['seconds']:.0f}"]
            + [DASH if p.get(k) is None else f"{p[k]:.3g}" for k in metrics]
            for name, pts in curves.items() for p in pts]
    return ["Run", "Step", "Training s"] + [_label(k) for k in metrics], rows


# ----------------------------------------------------------------------------- plots


def _headline_points(results: dict[str, Any], axis: str, mode: str | None) -> dict[str, dict[str, Any]]:
    key = headline(axis)[0]
    pts = {}
    for m in _methods(results):
        met = _metric(_axis_metrics(results, m, axis, mode).get(key))
        if met is not None:
            pts[m] = met
    return pts


def _plotted_axes(results: dict[str, Any]) -> list[str]:
    return [a for a in _axes(results) if headline(a)]


def _err(ms: list[dict[str, Any]]) -> list[list[float]]:
    lo = [max(0.0, x["value"] - x["lo"]) if x["lo"] is not None else 0.0 for x in ms]
    hi = [max(0.0, x["hi"] - x["value"]) if x["hi"] is not None else 0.0 for x in ms]
    return [lo, hi]


def _new_figure(size: tuple[float, float]):
    # Figure + Agg canvas directly: no pyplot global state, no display backend needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig


def plot_headline(results: dict[str, Any], axis: str, path: str | Path) -> Path | None:
    """Bar chart of an axis's headline metric per method (one bar group per mode) with CI error
    bars; None (nothing written) when no method has the metric."""
    key, better = headline(axis)
    series = {mode: _headline_points(results, axis, mode) for mode in _modes(results, axis)}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    methods = [m for m in _methods(results) if any(m in s for s in series.values())]
    fig = _new_figure((max(4.5, 1.3 * len(methods) + 2), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for j, (mode, pts) in enumerate(series.items()):
        xs = [i + (j - (len(series) - 1) / 2) * width for i, m in enumerate(methods) if m in pts]
        ms = [pts[m] for m in methods if m in pts]
        bars = ax.bar(xs, [x["value"] for x in ms], width, yerr=_err(ms), capsize=4,
                      label=_mode_title(axis, mode) if mode else None)
        ax.bar_label(bars, labels=[f"{x['value']:.2f}" for x in ms], padding=2, fontsize=8)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{_label(key).lower()} ({better} is better)")
    ax.set_title(f"{_label(key)} per method (95% CI)")
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def capability_metric(results: dict[str, Any]) -> str | None:
    """The capability metric plotted against safety: MMLU accuracy when present, else the first
    accuracy-like metric; None without one (a drift KL is no capability)."""
    keys = _ordered_keys([_block(results, m, "capability") for m in _methods(results)], CAPABILITY_FIRST)
    if "mmlu_accuracy" in keys:
        return "mmlu_accuracy"
    return next((k for k in keys if "acc" in k), None)


def plot_tradeoff(results: dict[str, Any], path: str | Path) -> Path | None:
    """Scatter of capability (y) against the first plotted axis's headline metric (x), one
    labelled point per method having both; None (nothing written) when no method has both."""
    cap = capability_metric(results)
    axes = _plotted_axes(results)
    if cap is None or not axes:
        return None
    axis = axes[0]
    mode = next((m for m in _modes(results, axis) if _headline_points(results, axis, m)), None)
    xs_all = _headline_points(results, axis, mode)
    pts = []
    for m in _methods(results):
        y = _metric(_block(results, m, "capability").get(cap))
        if m in xs_all and y is not None:
            pts.append((m, xs_all[m], y))
    if not pts:
        return None
    key, better = headline(axis)
    fig = _new_figure((5.0, 4.0))
    ax = fig.add_subplot()
    for name, x, y in pts:
        ax.errorbar(
            [x["value"]], [y["value"]], xerr=_err([x]), yerr=_err([y]), fmt="o", capsize=3, label=name
        )
        ax.annotate(name, (x["value"], y["value"]), textcoords="offset points", xytext=(6, 6), fontsize=9)
    where = f"{_mode_title(axis, mode)}; " if mode else ""
    ax.set_xlabel(f"{_label(key).lower()} ({where}{better} is safer)")
    ax.set_ylabel(_label(cap))
    ax.set_title("Capability vs. safety")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def plot_curves(results: dict[str, Any], path: str | Path) -> Path | None:
    """Learning curves from results["curves"] ({run name: [{"step", "seconds", metric: value}]}):
    one row per metric, against step (left) and training seconds (right); one colour per method,
    one line style per seed. None (nothing written) when there are no curves."""
    curves, metrics = _curves(results)
    if not metrics:
        return None
    fig = _new_figure((10.0, 2.8 * len(metrics)))
    methods = list(dict.fromkeys(name.split("-s")[0] for name in curves))
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    for row, metric in enumerate(metrics):
        for col, x in enumerate(("step", "seconds")):
            ax = fig.add_subplot(len(metrics), 2, 2 * row + col + 1)
            for name, pts in curves.items():
                xy = [(p[x], p[metric]) for p in pts if p.get(metric) is not None]
                if xy:
                    method, _, seed = name.partition("-s")
                    ax.plot(*zip(*xy), marker="o", markersize=3, color=colours[method],
                            linestyle=["-", "--", ":", "-."][int(seed or 0) % 4], label=name)
            ax.set_xlabel("optimizer step" if x == "step" else "training time (s)")
            ax.set_ylabel(_label(metric))
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Learning curves (validation items, never the test set)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


# ----------------------------------------------------------------------------- report


def _json(v: Any) -> str:
    return json.dumps(v, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _sections(results: dict[str, Any]) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    out = []
    for axis in _axes(results):
        for mode in _modes(results, axis):
            title = axis.replace("_", " ").capitalize() + (f" ({_mode_title(axis, mode)})" if mode else "")
            out.append((title, table_data(results, axis, mode)))
    if not out and any(_block(results, m, "capability") for m in _methods(results)):
        out.append(("Capability", table_data(results, "capability_only", None)))
    return out


def write_report(results: dict[str, Any], out_dir: str | Path,
                 extra_plots: list[tuple[Path, str]] | None = None) -> tuple[Path, Path]:
    """Write report.md, report.html (self-contained: tables plus base64-embedded plots) and the
    plots as PNG files into `out_dir`. Returns (md_path, html_path).

    Optional keys of `results`: "method_order" (row order), "lead_sections" (tables shown first:
    {"title", "headers", "rows"}), "warnings" (shown first, under the title), "notes" (shown before the
    standard notes). `extra_plots`
    (path, caption) come before the standard plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = str(results.get("title") or "opct report")
    meta = [(k, results[k]) for k in ("model", "profile", "created") if results.get(k) is not None]
    sections = [(s["title"], (s["headers"], s["rows"])) for s in results.get("lead_sections") or []]
    sections += _sections(results)
    train = _train_data(results)
    curve_table = _curve_data(results)
    candidates = [(plot_headline(results, axis, out_dir / plot_name(axis)), f"{_label(headline(axis)[0])} per method")
                  for axis in _plotted_axes(results)]
    candidates.append((plot_tradeoff(results, out_dir / SCATTER_PLOT), "Capability vs. safety"))
    candidates.append((plot_curves(results, out_dir / CURVE_PLOT),
                       "Learning curves: the validation metric and the drift KL against step and training time"))
    plots = list(extra_plots or []) + [(p, caption) for p, caption in candidates if p is not None]
    notes = list(results.get("notes") or []) + [n for axis in _axes(results) for n in _notes(axis)] + COMMON_NOTES
    verdicts = [v["sentence"] for v in results.get("verdicts") or []]
    changes = [v["sentence"] for v in results.get("capability_changes") or []]
    warnings = list(results.get("warnings") or [])
    extras = [(k.capitalize(), results[k]) for k in ("timings", "configs", "versions") if results.get(k)]

    md = [f"# {title}", ""]
    md += [f"- **{k}**: {v}" for k, v in meta] + ([""] if meta else [])
    if warnings:
        md += ["## Warnings", ""] + [f"- **{w}**" for w in warnings] + [""]
    if verdicts:
        md += ["## Verdict", ""] + [f"- {v}" for v in verdicts] + [""]
    if changes:
        md += ["## Capability against the base", "", CAPABILITY_CHANGE_NOTE, ""] + [f"- {v}" for v in changes] + [""]
    for sec_title, (headers, rows) in sections:
        md += [f"## {sec_title}", "", _md_table(headers, rows), ""]
    if train:
        md += ["## Training", "", _md_table(*train), ""]
    if curve_table:
        md += ["## Learning curves (validation items)", "", _md_table(*curve_table), ""]
    for p, caption in plots:
        md += [f"![{caption}]({p.name})", ""]
    md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for name, value in extras:
        md += [f"## {name}", "", "```json", _json(value), "```", ""]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    h = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left}th{background:#f2f2f2}pre{background:#f7f7f7;padding:1em;overflow:auto}"
        "img{max-width:100%;margin:1em 0}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if meta:
        h.append("<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in meta) + "</ul>")
    if warnings:
        h += ["<h2>Warnings</h2>", "<ul>" + "".join(f"<li><b>{html.escape(w)}</b></li>" for w in warnings) + "</ul>"]
    if verdicts:
        h += ["<h2>Verdict</h2>", "<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in verdicts) + "</ul>"]
    if changes:
        h += ["<h2>Capability against the base</h2>", f"<p>{html.escape(CAPABILITY_CHANGE_NOTE)}</p>",
              "<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in changes) + "</ul>"]
    for sec_title, (headers, rows) in sections:
        h += [f"<h2>{html.escape(sec_title)}</h2>", _html_table(headers, rows)]
    if train:
        h += ["<h2>Training</h2>", _html_table(*train)]
    if curve_table:
        h += ["<h2>Learning curves (validation items)</h2>", _html_table(*curve_table)]
    for p, caption in plots:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        h.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    h += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    for name, value in extras:
        h += [f"<h2>{html.escape(name)}</h2>", f"<pre>{html.escape(_json(value))}</pre>"]
    h.append("</body></html>")
    html_path = out_dir / "report.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    return md_path, html_path
