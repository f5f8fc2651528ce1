"""delift.report figures on a tiny synthetic sweep: files written, axes labelled, one line or bar per method."""

from __future__ import annotations

import numpy as np
import pytest
from test_report_support import rows, write_job

from delift.kernel.cache import KernelCache
from delift.kernel.settings import UtilityKernel
from delift.report import figures, kernel_figures
from delift.report.frame import build_frame, columns
from delift.report.jobs import group_jobs, load_jobs
from delift.report.survey import load_survey, survey_rows


@pytest.fixture
def frame(tmp_path):
    """Random and DELIFT at budgets 0.25 and 0.5 (two seeds), Full Data and Initial once; QLoRA BGE and
    ROUGE-1 on the new task and on the existing task (use case 3)."""
    base = {"random": 0.30, "delift": 0.40, "full": 0.50, "initial": 0.10}
    for selector, score in base.items():
        budgets = (0.25, 0.5) if selector in ("random", "delift") else (0.25,)
        for budget in budgets:
            for seed in (0, 1):
                size = {"full": 16, "initial": 0}.get(selector, int(16 * budget))
                value = score + budget / 10 + seed / 100
                write_job(tmp_path / "sweep", f"{selector}_{budget}_{seed}", selector, seed,
                          {"qlora/bge": value, "qlora/rouge1": value / 2, "qlora/existing/bge": 0.6 - value / 4,
                           "subset/size": size, "pool/size": 16}, config={"budget_fraction": budget},
                          predictions=rows("qlora", {"bge": [value] * 2, "rouge1": [value / 2] * 2}))
    jobs = load_jobs([tmp_path / "sweep"])
    keys, groups = group_jobs(jobs)
    return build_frame(groups, keys, columns(jobs), resamples=200)


def test_budget_curves_one_line_per_method_and_reference_lines(frame, tmp_path):
    path = tmp_path / "fig" / "budget.png"
    fig = figures.budget_curves(frame, path, "qlora")
    assert path.stat().st_size > 1000
    assert [ax.get_title() for ax in fig.axes] == ["ROUGE-1", "BGE"]
    ax = fig.axes[1]
    assert ax.get_xlabel() == "budget fraction (subset / pool)" and ax.get_ylabel() == "QLoRA BGE"
    curves = {line.get_label(): line for line in ax.get_lines() if line.get_marker() not in ("None", "", None)}
    assert sorted(curves) == ["DELIFT", "Random"]
    # DELIFT at 0.25: mean of 0.425 and 0.435; at 0.5: 0.45 and 0.46
    assert list(curves["DELIFT"].get_xdata()) == [0.25, 0.5]
    assert list(curves["DELIFT"].get_ydata()) == pytest.approx([0.43, 0.455])
    flat = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_label() not in curves}
    assert flat == pytest.approx({"Full Data": 0.53, "Initial": 0.13})  # horizontal lines at their means
    assert len(ax.collections) == 2  # one seed band per method
    # the band is the t-interval: DELIFT at 0.25, 0.43 +- 12.7062 * 0.00707107 / sqrt(2)
    band = ax.collections[1].get_paths()[0].vertices[:, 1]
    assert (band.min(), band.max()) == pytest.approx((0.43 - 0.0635310, 0.455 + 0.0635310), abs=1e-6)
    assert "95 % t-interval over seeds" in fig._suptitle.get_text()


def test_budget_curves_equal_lines_stay_distinguishable_with_one_legend_outside(frame, tmp_path):
    same = [{**e, "method": "DELIFT (SE)", "selector": "delift_se"} for e in frame if e["selector"] == "delift"]
    fig = figures.budget_curves(frame + same, tmp_path / "b.png", "qlora")  # DELIFT (SE) = DELIFT exactly
    for ax in fig.axes:
        assert ax.get_legend() is None  # no legend per panel
        lines = {line.get_label(): line for line in ax.get_lines() if line.get_marker() not in ("None", "", None)}
        assert list(lines["DELIFT"].get_ydata()) == list(lines["DELIFT (SE)"].get_ydata())
        styles = [(line.get_marker(), line.get_linestyle(), line.get_markersize()) for line in lines.values()]
        assert len({s[0] for s in styles}) == len({s[1] for s in styles}) == len({s[2] for s in styles}) == 3
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["Random", "DELIFT", "DELIFT (SE)", "Full Data", "Initial"]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert all(not box.overlaps(ax.get_window_extent()) for ax in fig.axes)  # beside the panels, not on the bands


def test_bars_one_bar_per_method_with_interval_whiskers(frame, tmp_path):
    path = tmp_path / "bars.png"
    fig = figures.method_bars(frame, path, "qlora", setting="budget_fraction=0.25")
    assert path.exists()
    ax = fig.axes[1]
    bars = ax.patches
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["Initial", "Random", "DELIFT", "Full Data"] and len(bars) == 4
    assert [b.get_height() for b in bars] == pytest.approx([0.13, 0.33, 0.43, 0.53])
    assert ax.get_ylabel() == "QLoRA BGE" and ax.get_xlabel() == "method"
    # the whisker of Random spans its t-interval: 0.33 +- 12.7062 * 0.00707107 / sqrt(2)
    segments = ax.collections[0].get_segments()
    assert (segments[1][0][1], segments[1][1][1]) == pytest.approx((0.33 - 0.0635310, 0.33 + 0.0635310), abs=1e-6)
    assert "whiskers: 95 % t-interval over seeds" in fig._suptitle.get_text()


def test_bars_share_y_ranges_across_budgets_and_clip_bounded_metrics(tmp_path):
    """ROUGE-1 of Random at 0.25 has two seeds 0.02 and 0.2 (t-interval -1.03..1.25): the whisker stops at 0
    and 1; ROUGE-2 is 0 everywhere: its axis is 0..1, not -0.04..0.04; both budgets share the y-limits."""
    for budget, rouge1 in ((0.25, (0.02, 0.2)), (0.5, (0.3, 0.31))):
        for seed in (0, 1):
            write_job(tmp_path / "sweep", f"r{budget}_{seed}", "random", seed,
                      {"qlora/rouge1": rouge1[seed], "qlora/rouge2": 0.0, "subset/size": 4, "pool/size": 16},
                      config={"budget_fraction": budget})
    jobs = load_jobs([tmp_path / "sweep"])
    keys, groups = group_jobs(jobs)
    frame = build_frame(groups, keys, columns(jobs), resamples=100)
    low_fig = figures.method_bars(frame, tmp_path / "a.png", "qlora", setting="budget_fraction=0.25")
    high_fig = figures.method_bars(frame, tmp_path / "b.png", "qlora", setting="budget_fraction=0.5")
    (rouge1, rouge2), (rouge1_high, rouge2_high) = low_fig.axes, high_fig.axes
    whisker = rouge1.collections[0].get_segments()[0][:, 1]
    assert (whisker.min(), whisker.max()) == pytest.approx((0.0, 1.0))  # clipped to ROUGE's [0, 1]
    assert rouge1.get_ylim() == rouge1_high.get_ylim() and rouge1.get_ylim()[0] == 0.0
    assert rouge2.get_ylim() == rouge2_high.get_ylim() == (0.0, 1.0)


def test_y_ranges_of_flat_and_bounded_panels():
    def entry(metric, mean, low=None, high=None):
        return {"metric": metric, "mean": mean, "ci_low": low, "ci_high": high}

    assert figures.y_range([entry("rouge1", 0.0, 0.0, 0.0)], "rouge1", from_zero=False) == (0.0, 1.0)
    assert figures.y_range([entry("judge", 3.0)], "judge", from_zero=False) == (1.0, 5.0)
    low, high = figures.y_range([entry("bge", 0.05, -0.3, 0.4), entry("bge", 0.3)], "bge", from_zero=False)
    assert low == 0.0 and high == pytest.approx(0.4 + 0.08 * 0.4)  # never below a bounded metric's 0
    low, high = figures.y_range([entry("my_score", -2.0), entry("my_score", 2.0)], "my_score", from_zero=False)
    assert (low, high) == pytest.approx((-2.32, 2.32))  # unbounded: the data and a margin


def test_forgetting_plots_new_task_against_existing_task(frame, tmp_path):
    path = tmp_path / "forget.png"
    fig = figures.forgetting(frame, path, "qlora", "bge", setting="budget_fraction=0.25")
    assert path.exists()
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("existing task BGE") and ax.get_ylabel().startswith("new task BGE")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Initial", "Random", "DELIFT", "Full Data"]
    points = {c.get_label(): (c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in ax.containers}
    assert points["DELIFT"] == pytest.approx((0.6 - 0.43 / 4, 0.43))
    assert figures.forgetting(frame, tmp_path / "none.png", "qlora", "rouge1") is None  # no existing/rouge1


def test_survey_scatter_with_the_line_and_literature_points(frame, tmp_path):
    spec = load_survey()
    path = tmp_path / "survey.png"
    fig = figures.survey_scatter(survey_rows(frame, spec), spec, path, "qlora")
    ax = fig.axes[0]
    assert path.exists() and ax.get_xlabel().startswith("SDF") and ax.get_ylabel().startswith("PIR")
    notes = {t.get_text() for t in ax.texts}
    assert notes == {f"{name} (lit.)" for name in spec["points"]} and len(notes) == 7
    line = ax.get_lines()[0]
    assert line.get_ydata()[0] == pytest.approx(1.4 - 1.30303 * 0.025)
    mine = [t.get_text() for t in ax.get_legend().get_texts() if t.get_text().endswith("(this run)")]
    assert mine == ["Initial (this run)", "Random (this run)", "DELIFT (this run)"]


def delift_run(tmp_path):
    """A DELIFT job whose kernel is in the cache: UF[i, j] = 10 i + j, selection order c, a, then b."""
    ids = ["a", "b", "c", "d"]
    uf = np.array([[10.0 * i + j for j in range(4)] for i in range(4)])
    KernelCache(tmp_path / "cache" / "kernels").save(
        "k" * 64, UtilityKernel(uf=uf, d_zero=np.zeros(4), d_one=np.zeros((4, 4)), target_ids=ids,
                                candidate_ids=ids), {"test": True})
    return write_job(tmp_path, "job", "delift", 0, {"qlora/bge": 0.5},
                     subset={"kernel_hash": "k" * 64, "selected_ids": ["c", "a", "b"], "gains": [3.0, 1.0, 0.0],
                             "info": {"positive_gain_picks": 2}})


def test_kernel_heatmap_follows_the_selection_order(tmp_path):
    job = delift_run(tmp_path)
    path = tmp_path / "kernel.png"
    fig = kernel_figures.kernel_heatmap(job, path)
    assert path.exists()
    ax = fig.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    order = [2, 0, 1, 3]  # c, a, b selected in that order, then d
    assert shown.tolist() == [[10.0 * i + j for j in order] for i in order]
    assert np.diag(shown).tolist() == [22.0, 0.0, 11.0, 33.0]  # the self-pairs stay on the diagonal
    assert ax.get_xlabel().startswith("candidate (shown example), selection order; first 3 selected")
    assert "diagonal" in ax.get_ylabel()
    assert kernel_figures.kernel_heatmap(job, tmp_path / "x.png", cache_dir=tmp_path / "elsewhere") is None
    named = kernel_figures.kernel_heatmap(job, tmp_path / "named.png", setting="scorer=tiny-llama-b")
    assert named.axes[0].get_title() == "DELIFT, scorer=tiny-llama-b, seed 0: utility kernel"  # method, setting, seed


def test_gain_curve_marks_the_positive_gain_picks(tmp_path):
    job = delift_run(tmp_path)
    fig = kernel_figures.gain_curve(job, tmp_path / "gains.png")
    ax = fig.axes[0]
    gains, marker = ax.get_lines()
    assert list(gains.get_ydata()) == [3.0, 1.0, 0.0] and list(gains.get_xdata()) == [1, 2, 3]
    assert marker.get_label() == "positive_gain_picks = 2" and list(marker.get_xdata()) == [2.5, 2.5]
    assert ax.get_xlabel() == "greedy pick" and ax.get_ylabel() == "marginal gain of the objective"
    named = kernel_figures.gain_curve(job, tmp_path / "named.png", setting="scorer=null")
    assert named.axes[0].get_title() == "DELIFT, scorer=null, seed 0: greedy gains of 3 picks"
    fig.canvas.draw()
    assert all(float(x).is_integer() for x in ax.get_xticks())  # picks are integers
    assert ax.get_xlim() == (0.5, 3.5)


def test_gain_curve_draws_no_marker_past_the_data_when_every_gain_is_positive(tmp_path):
    job = write_job(tmp_path, "job", "delift_se", 0, {"qlora/bge": 0.5},
                    subset={"selected_ids": ["a", "b"], "gains": [3.8e-4, 1.5e-4], "info": {"positive_gain_picks": 2}})
    fig = kernel_figures.gain_curve(job, tmp_path / "g.png")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 1 and max(ax.get_xlim()) <= 2.5  # no line at 2.5 past the last pick
    assert ax.get_title() == "DELIFT (SE), seed 0: greedy gains of 2 picks; all 2 gains positive"
    fig.canvas.draw()
    labels = [t.get_text().replace("$\\mathdefault{", "").replace("}$", "") for t in ax.get_yticklabels()]
    assert labels and max(map(len, labels)) <= 4, labels  # 3.5 with a shared x10^-4, not 0.00035


def test_a_top_k_selector_shows_scores_and_marks_the_picks_filled_from_dropped_examples(tmp_path):
    job = write_job(tmp_path, "job", "ifd", 1, {"qlora/bge": 0.5},
                    subset={"selected_ids": ["a", "b", "c", "d"], "gains": [0.9, 0.8, 1.2, 1.5],
                            "info": {"dropped_above_threshold": 2, "filled_from_dropped": 2, "cache_hits": 0,
                                     "scores": {"a": 0.9, "b": 0.8, "c": 1.2, "d": 1.5}}})
    ax = kernel_figures.gain_curve(job, tmp_path / "g.png").axes[0]
    kept, filled = ax.get_lines()
    assert list(kept.get_xdata()) == [1, 2] and list(filled.get_xdata()) == [3, 4]
    assert filled.get_marker() == "x" and filled.get_label().startswith("2 filled from dropped examples")
    assert ax.get_ylabel() == "score (top-k selection, pick order)" and "gain" not in ax.get_ylabel()
    assert ax.get_title() == "IFD, seed 1: scores of 4 picks"


def test_kernel_colour_bar_ticks_are_short(tmp_path):
    ids = ["a", "b", "c"]
    uf = np.array([[1e-4 * (i - j) for j in range(3)] for i in range(3)])
    KernelCache(tmp_path / "cache" / "kernels").save(
        "q" * 64, UtilityKernel(uf=uf, d_zero=np.zeros(3), d_one=np.zeros((3, 3)), target_ids=ids, candidate_ids=ids),
        {"test": True})
    job = write_job(tmp_path, "job", "delift", 0, {"qlora/bge": 0.5},
                    subset={"kernel_hash": "q" * 64, "selected_ids": ["a"], "gains": [1.0], "info": {}})
    fig = kernel_figures.kernel_heatmap(job, tmp_path / "k.png")
    fig.canvas.draw()
    bar = fig.axes[1].yaxis
    labels = [t.get_text() for t in bar.get_ticklabels() if t.get_text()]
    assert labels and all(len(text.replace("$", "").replace("\\mathdefault{", "").replace("}", "")) <= 5
                          for text in labels), labels  # e.g. 1, not 0.000100
    assert "10^{\u22124}" in bar.get_offset_text().get_text()  # the shared power of ten, with a true minus sign


def test_a_method_keeps_its_colour_in_every_figure(frame, tmp_path):
    from matplotlib.colors import to_hex

    curves = figures.budget_curves(frame, tmp_path / "c.png", "qlora").axes[1]
    line = {drawn.get_label(): to_hex(drawn.get_color()) for drawn in curves.get_lines()}
    bars = figures.method_bars(frame, tmp_path / "b.png", "qlora", setting="budget_fraction=0.25").axes[1]
    bar = {t.get_text(): to_hex(p.get_facecolor()) for t, p in zip(bars.get_xticklabels(), bars.patches)}
    assert bar["DELIFT"] == line["DELIFT"] and bar["Random"] == line["Random"] and bar["DELIFT"] != bar["Random"]
    spec = load_survey()
    scatter = figures.survey_scatter(survey_rows(frame, spec), spec, tmp_path / "s.png", "qlora").axes[0]
    dots = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in scatter.collections if c.get_label().endswith("(this run)")}
    assert dots["DELIFT (this run)"] == line["DELIFT"] and dots["Random (this run)"] == line["Random"]
