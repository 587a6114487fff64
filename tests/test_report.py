import pytest

from opct.report import capability_metric, results_table, table_data, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def s(v, lo=None, hi=None, n=100):
    return {"value": v, "ci_low": v - 0.05 if lo is None else lo, "ci_high": v + 0.05 if hi is None else hi, "n": n}


def syc(rate, brr, cons, acc, unparsed=(0, 0)):
    return {
        "sycophancy_rate": s(rate), "brr": s(brr), "consistency": s(cons), "clean_accuracy": s(acc),
        "wrapped_accuracy": s(acc - 0.1), "clean_suggested_rate": s(rate - brr),
        "unparsed": {"clean": unparsed[0], "wrapped": unparsed[1]}, "n_items": 100, "n_excluded": 0,
        "by_family": {},
    }


@pytest.fixture
def results():
    return {
        "title": "Sycophancy <demo>",
        "model": "embedded:smollm2-135m-instruct",
        "profile": "quick",
        "created": "2025-01-01T00:00:00",
        "methods": {
            "opct": {
                "sycophancy": {"probs": syc(0.20, 0.05, 0.85, 0.55), "generate": syc(0.25, 0.08, 0.80, 0.50, (3, 4))},
                "capability": {"mmlu_accuracy": s(0.44), "kl_from_base": s(0.02)},
                "train": {"steps": 50, "final_loss": 0.123456, "wall_s": 12.5},
            },
            "base": {
                "sycophancy": {"probs": syc(0.60, 0.40, 0.45, 0.56), "generate": syc(0.55, 0.35, 0.50, 0.52, (1, 2))},
                "capability": {"mmlu_accuracy": s(0.45), "kl_from_base": 0.0},
            },
            "sft": {"sycophancy": {"probs": syc(0.30, 0.10, 0.70, 0.54)}},  # no capability, no generate
            "act": {"capability": {"mmlu_accuracy": s(0.43)}},  # no sycophancy
        },
        "configs": {"opct": {"lr": 1e-4}},
        "timings": {"total_s": 100.0},
        "versions": {"torch": "2.x"},
    }


def test_results_table(results):
    md = results_table(results)
    lines = md.splitlines()
    assert lines[0].startswith("| Method | Sycophancy rate | BRR | Consistency | Clean acc | Wrapped acc | n |")
    assert "MMLU acc" in lines[0] and "KL from base" in lines[0]
    assert "Clean picks suggested" not in lines[0] and "n items" not in lines[0]
    # canonical method order, all methods listed
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["base", "sft", "opct", "act"]
    assert "| base | 0.600 [0.550, 0.650] | 0.400 [0.350, 0.450] |" in md
    sft = next(ln for ln in lines if ln.startswith("| sft "))
    act = next(ln for ln in lines if ln.startswith("| act "))
    assert sft.rstrip(" |").endswith("–")  # missing capability
    assert act.count("–") >= 5
    base = next(ln for ln in lines if ln.startswith("| base "))
    assert "| 0.000 |" in base  # a plain number without CI
    gen = results_table(results, answers="generate")
    assert "Unparsed (clean/wrapped)" in gen and "| 1/2 |" in gen
    assert "0.550 [0.500, 0.600]" in gen


def test_table_tolerates_missing():
    headers, rows = table_data({"methods": {"base": {}}})
    assert headers == ["Method"] and rows == [["base"]]
    assert capability_metric({"methods": {"x": {"capability": {"arc_accuracy": 0.3, "kl_from_base": 0.1}}}}) == "arc_accuracy"
    assert capability_metric({"methods": {"x": {}}}) is None
    assert capability_metric({"methods": {"x": {"capability": {"kl_from_organism": 0.1}}}}) is None


def test_write_report(results, tmp_path):
    md_path, html_path = write_report(results, tmp_path / "out")
    assert md_path.name == "report.md" and html_path.name == "report.html"
    md = md_path.read_text()
    assert results_table(results) in md
    assert "## Notes" in md and "sycophancy_rate.png" in md and "capability_vs_safety.png" in md
    assert "## Training" in md and "0.1235" in md
    for name in ("sycophancy_rate.png", "capability_vs_safety.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "<table>" in page and "<td>0.600 [0.550, 0.650]</td>" in page and "<th>Sycophancy rate</th>" in page
    assert "Sycophancy &lt;demo&gt;" in page  # escaped
    assert "src=\"sycophancy_rate.png\"" not in page  # self-contained


def test_warnings_come_before_any_table(results, tmp_path):
    md_path, html_path = write_report({**results, "warnings": ["The organism is <stuck>."]}, tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    assert md.index("## Warnings") < md.index("|") and "- **The organism is <stuck>.**" in md
    assert page.index("<h2>Warnings</h2>") < page.index("<table>") and "The organism is &lt;stuck&gt;." in page
    assert "## Warnings" not in write_report(results, tmp_path / "plain")[0].read_text()


def test_capability_changes_have_their_own_section(results, tmp_path):
    change = {"sentence": "SFT above BASE on MMLU accuracy (held-out subjects): no (SFT 0.5 <x>)"}
    md_path, html_path = write_report({**results, "capability_changes": [change]}, tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    assert "## Capability against the base" in md and f"- {change['sentence']}" in md
    assert "<h2>Capability against the base</h2>" in page and "(SFT 0.5 &lt;x&gt;)" in page
    assert "Capability against the base" not in write_report(results, tmp_path / "plain")[0].read_text()


def test_write_report_without_plots(tmp_path):
    res = {"methods": {"base": {"capability": {"kl_from_base": 0.0}}, "sft": {}}}
    md_path, html_path = write_report(res, tmp_path)
    assert md_path.exists() and html_path.exists()
    assert not (tmp_path / "sycophancy_rate.png").exists()
    assert not (tmp_path / "capability_vs_safety.png").exists()
    assert "KL from base" in md_path.read_text()
    # sycophancy without any capability: bar chart only
    res = {"methods": {"base": {"sycophancy": {"probs": syc(0.5, 0.2, 0.6, 0.5)}}}}
    write_report(res, tmp_path / "b")
    assert (tmp_path / "b" / "sycophancy_rate.png").exists()
    assert not (tmp_path / "b" / "capability_vs_safety.png").exists()


def test_report_for_jailbreak_and_safety_axes(tmp_path):
    per_fact = {"pool": s(0.5), "dog": s(0.7)}  # a breakdown table, not a mode
    res = {"methods": {
        "base": {"jailbreak": {"static": {"attack_success_rate": s(0.6), "judge_score_mean": s(0.5)},
                               "adaptive": {"defense_success_rate": s(0.2), "attack_success_rate": s(0.8)}},
                 "over_refusal": {"over_refusal_rate": s(0.1)},
                 "safety": {"ausc": s(0.4), "pass_rate": s(0.45), "per_fact": per_fact},
                 "capability": {"mmlu_accuracy": s(0.4)}},
        "opct": {"jailbreak": {"adaptive": {"defense_success_rate": s(0.9), "attack_success_rate": s(0.1)}},
                 "safety": {"ausc": s(0.7), "pass_rate": s(0.72), "per_fact": per_fact},
                 "capability": {"mmlu_accuracy": s(0.41)}},
    }}
    md = write_report(res, tmp_path)[0].read_text()
    assert "## Jailbreak (static held-out wrappers)" in md and "## Jailbreak (adaptive wrapper-search attacker)" in md
    assert "## Safety" in md and "## Over refusal" in md and "per fact" not in md.lower().split("## notes")[0]
    adaptive = table_data(res, "jailbreak", "adaptive")
    assert adaptive[0][:3] == ["Method", "Defense success", "ASR"]
    assert adaptive[1][1][1].startswith("0.900")
    assert table_data(res, "safety", None)[1][1][1].startswith("0.700")
    for name in ("defense_success_rate.png", "ausc.png", "over_refusal_rate.png", "capability_vs_safety.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "sycophancy_rate.png").exists()
    assert "AUSC" in md and "Over-refusal" in md


def test_a_small_value_is_not_printed_as_zero():
    from opct.report import _fmt

    assert _fmt({"value": 0.000224, "lo": 0.000154, "hi": 0.000302, "n": 12}) == "0.00022 [0.00015, 0.00030]"
    assert _fmt({"value": 0.0, "lo": 0.0, "hi": 0.029, "n": 128}) == "0.000 [0.000, 0.029]"  # a true zero stays
    assert _fmt({"value": 0.852, "lo": 0.780, "hi": 0.903, "n": 128}) == "0.852 [0.780, 0.903]"
