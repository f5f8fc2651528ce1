"""delift.report: grouping by varying settings, seed means, columns found in the runs, paired tests, outputs."""

from __future__ import annotations

import csv
import math

import pytest
from test_report_support import rows, write_job

from delift.report.cli import build_report, main, run
from delift.report.frame import build_frame, columns
from delift.report.jobs import group_jobs, load_jobs


def budget_sweep(root):
    """Random at budgets 0.25 and 0.5, seeds 0 and 1; paths, workers, progress and logger differ per job."""
    values = {(0.25, 0): 0.2, (0.25, 1): 0.4, (0.5, 0): 0.5, (0.5, 1): 0.7}
    for num, ((budget, seed), value) in enumerate(values.items()):
        write_job(root, f"{num}_b{budget}_s{seed}", "random", seed, {"qlora/rouge1": value, "subset/size": 4,
                                                                       "pool/size": 16},
                  config={"budget_fraction": budget, "paths": {"cache_dir": f"/c{num}"}, "kernel": {"workers": num},
                          "progress": num % 2 == 0, "data": {"local_path": f"/d{num}"}, "logger": {"mode": str(num)}})


def table_lines(text):
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_jobs_that_differ_in_budget_are_separate_rows_never_averaged(tmp_path):
    budget_sweep(tmp_path / "sweep")
    jobs = load_jobs([tmp_path / "sweep"])
    keys, groups = group_jobs(jobs)
    assert keys == ["budget_fraction"]  # paths, kernel.workers, progress, local_path, logger.* do not split
    frame = build_frame(groups, keys, columns(jobs))
    by_budget = {e["setting"]["budget_fraction"]: e for e in frame}
    assert by_budget[0.25]["mean"] == pytest.approx(0.3) and by_budget[0.25]["std"] == pytest.approx(math.sqrt(0.02))
    assert by_budget[0.5]["mean"] == pytest.approx(0.6) and by_budget[0.5]["std"] == pytest.approx(math.sqrt(0.02))
    # t-interval: 0.3 +- 12.7062 * 0.141421 / sqrt(2)
    assert (by_budget[0.25]["ci_low"], by_budget[0.25]["ci_high"]) == pytest.approx((0.3 - 1.27062, 0.3 + 1.27062),
                                                                                      abs=1e-5)
    assert by_budget[0.25]["sdf"] == pytest.approx(0.25)
    out = build_report([tmp_path / "sweep"], out=tmp_path / "rep", draw=False)
    lines = table_lines(out["table"].read_text())
    assert lines[0] == "| budget_fraction | method | n | QLoRA ROUGE-1 |"
    assert lines[1] == "| 0.25 | Random | 2 | 0.3000 ± 0.1414 [-0.9706, 1.5706] |"
    assert lines[2] == "| 0.5 | Random | 2 | 0.6000 ± 0.1414 [-0.6706, 1.8706] |"


def paired_sweep(root):
    """DELIFT and Random, seeds 0 and 1, three test examples with per-example BGE scores."""
    scores = {("delift", 0): [0.5, 0.7, 0.9], ("random", 0): [0.4, 0.4, 0.6],
              ("delift", 1): [0.6, 0.6, 0.6], ("random", 1): [0.5, 0.6, 0.3]}
    for num, ((selector, seed), bge) in enumerate(scores.items()):
        judge = [4.0, None, 2.0] if seed == 0 else [None, None, None]
        write_job(root, f"{num}", selector, seed, {"qlora/bge": sum(bge) / 3, "qlora/judge": 3.0 if seed == 0 else None,
                                                   "subset/size": 3, "pool/size": 10, "time/selection_s": 2.0 + seed},
                  predictions=rows("qlora", {"bge": bge, "judge": judge}))


def test_paired_difference_joins_examples_within_seeds(tmp_path):
    paired_sweep(tmp_path / "sweep")
    out = build_report([tmp_path / "sweep"], out=tmp_path / "rep", draw=False)
    delift = {e["metric"]: e for e in out["frame"] if e["selector"] == "delift"}
    vs = delift["bge"]["vs"]["random"]
    # seed 0: 0.1, 0.3, 0.3 (mean 0.2333); seed 1: 0.1, 0.0, 0.3 (mean 0.1333); mean of seed means 0.18333
    assert vs.diff == pytest.approx(0.55 / 3) and vs.pairs == 6 and vs.seeds == 2
    assert vs.low > 0 and vs.significant  # every difference >= 0, the smallest resample mean is 0.05
    # judge: null scores are missing; only seed 0 has judge means, and its pairs are (4,4) and (2,2)
    assert (delift["judge"]["n"], delift["judge"]["mean"]) == (1, 3.0)
    assert delift["judge"]["vs"]["random"].diff == 0.0 and delift["judge"]["vs"]["random"].pairs == 2
    text = out["table"].read_text()
    lines = table_lines(text)
    assert lines[0] == "| method | n | QLoRA BGE | QLoRA LAJ |"
    assert lines[1] == "| Random | 2 | 0.4667 ± 0.0000 [0.4667, 0.4667] | 3.0000 (n=1) |"
    assert lines[2] == ("| DELIFT | 2 | 0.6500 ± 0.0707 [0.0147, 1.2853] † | 3.0000 (n=1) |")  # 0.65 +- 12.7062 * 0.0707 / sqrt 2
    assert "| DELIFT | Random | +0.1833 [" in text
    with (tmp_path / "rep" / "table.csv").open() as handle:
        found = {r["method"]: r for r in csv.DictReader(handle)}
    assert float(found["DELIFT"]["qlora/bge_diff_vs_random"]) == pytest.approx(0.55 / 3)
    assert found["DELIFT"]["qlora/bge_diff_vs_random_pairs"] == "6" and found["Random"]["qlora/bge_diff_vs_random"] == ""
    assert float(found["DELIFT"]["selection_s"]) == pytest.approx(2.5) and float(found["DELIFT"]["sdf"]) == 0.3


def test_columns_are_every_protocol_and_metric_that_ran(tmp_path):
    write_job(tmp_path, "0", "random", 0, {"lora/rouge1": 0.1, "icl/exact_match": 0.5, "icl/exact_match_n": 2,
                                           "icl/my_score": 0.25, "icl/k": 5.0, "qlora/train_loss": 1.0,
                                           "lora/existing/rouge1": 0.05},
              predictions=rows("icl", {"exact_match": [1.0, 0.0], "my_score": [0.5, 0.0]}))
    jobs = load_jobs([tmp_path])
    assert columns(jobs) == [("icl", "", "exact_match"), ("icl", "", "my_score"), ("lora", "", "rouge1"),
                             ("lora", "existing", "rouge1")]
    keys, groups = group_jobs(jobs)
    frame = build_frame(groups, keys, columns(jobs))  # each column reads back its metrics.json key, split or none
    assert [(e["key"], e["mean"]) for e in frame] == [("icl/exact_match", 0.5), ("icl/my_score", 0.25),
                                                      ("lora/rouge1", 0.1), ("lora/existing/rouge1", 0.05)]


def test_selector_settings_that_vary_within_a_method_are_variants(tmp_path):
    for num, (selector, post) in enumerate([("delift", "clip"), ("delift", "minmax"), ("random", None)]):
        config = {"selector": {"postprocess": post}} if post else {}
        write_job(tmp_path, str(num), selector, 0, {"qlora/bge": 0.1 * (num + 1)}, config=config)
    jobs = load_jobs([tmp_path])
    keys, groups = group_jobs(jobs)
    assert keys == []  # selector.* keys differ between selectors by construction: not a setting
    frame = build_frame(groups, keys, columns(jobs))
    assert [e["method"] for e in frame] == ["Random", "DELIFT (postprocess=clip)", "DELIFT (postprocess=minmax)"]
    assert [e["mean"] for e in frame] == pytest.approx([0.3, 0.1, 0.2])


def test_the_scorer_is_one_row_setting_named_by_the_scoring_model(tmp_path):
    """Runs scored by their own model (``scorer: null``, or run folders from before scorers) are one setting;
    each scorer is another, labelled by its name; its cache_dir (a copy of paths.cache_dir) splits nothing."""
    small = {"name": "small", "source": "hub", "hub_id": "org/small", "dtype": "auto"}
    jobs = [("old0", 0, None, 0.2), ("null1", 1, {"scorer": None}, 0.4),
            ("small0", 0, {"scorer": {**small, "cache_dir": "/c0"}}, 0.5),
            ("small1", 1, {"scorer": {**small, "cache_dir": "/c1"}}, 0.7),
            ("tiny0", 0, {"scorer": {"name": "tiny", "source": "tiny_random", "dtype": "float32"}}, 0.1)]
    for name, seed, config, bge in jobs:
        write_job(tmp_path, name, "random", seed, {"qlora/bge": bge}, config=config)
    done = build_report([tmp_path], out=tmp_path / "rep", draw=False)
    assert done["shown"] == ["scorer"] and "scorer.cache_dir" not in done["keys"]
    found = {e["setting_label"]: (e["n"], e["mean"]) for e in done["frame"]}
    assert found == {"scorer=null": (2, pytest.approx(0.3)), "scorer=small": (2, pytest.approx(0.6)),
                     "scorer=tiny": (1, pytest.approx(0.1))}


def test_wall_seconds_per_job_is_a_last_column_when_the_runs_recorded_it(tmp_path):
    for seed, (bge, seconds) in enumerate([(0.2, 100.0), (0.4, 130.0)]):
        write_job(tmp_path, f"r{seed}", "random", seed, {"qlora/bge": bge, "time/total_s": seconds})
    write_job(tmp_path, "d0", "delift", 0, {"qlora/bge": 0.5})  # no time recorded: a dash
    out = build_report([tmp_path], out=tmp_path / "rep", draw=False)
    lines = table_lines(out["table"].read_text())
    assert lines[0] == "| method | n | QLoRA BGE | s/job |"
    assert lines[1].startswith("| Random | 2 | 0.3000 ± ") and lines[1].endswith(" | 115 |")
    assert lines[2].endswith(" | – |")
    with (tmp_path / "rep" / "table.csv").open() as handle:
        found = {r["method"]: r for r in csv.DictReader(handle)}
    assert float(found["Random"]["total_s"]) == pytest.approx(115.0) and found["DELIFT"]["total_s"] == ""


def test_a_seed_that_ran_twice_is_counted_once(tmp_path):
    write_job(tmp_path / "a", "0", "random", 0, {"qlora/bge": 0.2})
    write_job(tmp_path / "b", "0", "random", 0, {"qlora/bge": 0.6})
    out = build_report([tmp_path / "a", tmp_path / "b"], out=tmp_path / "rep", draw=False)
    assert [(e["n"], e["mean"]) for e in out["frame"]] == [(1, 0.2)]
    assert any("a second job of the same setting, method and seed" in n for n in out["notes"])


def test_cli_writes_every_file_under_results_name_and_marks_a_named_baseline(tmp_path, monkeypatch):
    paired_sweep(tmp_path / "sweep")
    for seed in (0, 1):
        write_job(tmp_path / "sweep", f"se{seed}", "delift_se", seed, {"qlora/bge": 0.45},
                  predictions=rows("qlora", {"bge": [0.45, 0.45, 0.45], "judge": [None] * 3}))
    monkeypatch.chdir(tmp_path)
    out = run(["sweep", "--baseline", "delift_se", "--no-figures"])
    assert out.as_posix() == "results/synth"
    for name in ("table.md", "table.csv", "survey.md", "survey.csv", "jobs.csv", "report.md"):
        assert (tmp_path / out / name).exists(), name
    table = (tmp_path / out / "table.md").read_text()
    assert "> caveat: tiny random model: plumbing check only" in table
    delift_row = next(line for line in table_lines(table) if line.startswith("| DELIFT |"))
    # DELIFT - DELIFT (SE): seed 0: 0.05, 0.25, 0.45; seed 1: 0.15 each: every difference > 0
    assert "†‡" in delift_row
    assert "| DELIFT | DELIFT (SE) | +0.2000 [" in table  # seed means 0.25 and 0.15
    report = (tmp_path / out / "report.md").read_text()
    assert report.startswith("# synth\n\n> caveat: tiny random model") and "## Survey metrics" in report
    assert main(["sweep", "--no-figures", "--out", "again"]) == 0  # the console script's exit status (a Path: 1)
    assert (tmp_path / "again" / "table.md").exists()


def test_more_than_three_varying_keys_share_one_setting_column(tmp_path):
    changes = [{}, {"budget_fraction": 0.2}, {"data": {"name": "d1"}}, {"model": {"name": "m1"}},
               {"data": {"sizes": {"train": 50}}}]  # each key alone tells one setting apart: all four are shown
    for num, change in enumerate(changes):
        write_job(tmp_path, str(num), "random", 0, {"qlora/bge": 0.1 * (num + 1)}, config=change)
    text = build_report([tmp_path], out=tmp_path / "rep", draw=False)["table"].read_text()
    # rows sort by budget first, then each key's value: the unchanged job (0.1) is last
    assert "- S1: budget_fraction=0.2, data.name=quickstart, data.sizes.train=100, model.name=tiny" in text
    assert "- S3: budget_fraction=0.3, data.name=quickstart, data.sizes.train=50, model.name=tiny" in text
    assert "- S5: budget_fraction=0.3, data.name=quickstart, data.sizes.train=100, model.name=tiny" in text
    assert table_lines(text)[1:] == [f"| S{i + 1} | Random | 1 | {v:.4f} |" for i, v in
                                                          enumerate([0.2, 0.3, 0.5, 0.4, 0.1])]


def test_labels_name_only_the_keys_that_tell_settings_apart(tmp_path):
    """Switching the use case changes dozens of nested keys (usecase.target.* appear, usecase.existing.*
    vanish); the use case's name is the one label needed. Grouping still uses every key."""
    target = {"name": "gsm8k", "sizes": {"valid": 4, "test": 6}, "max_rows": 40}
    existing = {"name": "squad", "sizes": {"train": 6, "test": 6}, "max_rows": 40}
    for num, usecase in enumerate([{"name": "task_specific", "target": target, "existing": None},
                                   {"name": "continual", "target": None, "existing": existing}]):
        write_job(tmp_path, str(num), "random", 0, {"qlora/bge": 0.5}, config={"usecase": usecase})
    done = build_report([tmp_path], out=tmp_path / "rep", draw=False)
    assert done["shown"] == ["usecase.name"] and len(done["keys"]) > 5
    assert {e["setting_label"] for e in done["frame"]} == {"usecase.name=task_specific", "usecase.name=continual"}
    assert table_lines(done["table"].read_text())[0] == "| usecase.name | method | n | QLoRA BGE |"


def test_folders_of_different_experiments_need_a_name(tmp_path):
    write_job(tmp_path, "0", "random", 0, {"qlora/bge": 0.5}, config={"name": "a"})
    write_job(tmp_path, "1", "random", 0, {"qlora/bge": 0.5}, config={"name": "b"})
    with pytest.raises(SystemExit, match="pass --name"):
        build_report([tmp_path], draw=False)
    out = build_report([tmp_path], out=tmp_path / "rep", name="ab", draw=False)
    assert out["keys"] == ["name"] and len({e["row"] for e in out["frame"]}) == 2


def test_folders_that_are_not_delift_jobs_are_skipped(tmp_path):
    job = write_job(tmp_path, "0", "random", 0, {"qlora/bge": 0.5})
    (job / "selection" / "reference").mkdir(parents=True)
    (job / "selection" / "reference" / "metrics.json").write_text("{}")  # inside a job: not another job
    (job / "selection" / "reference" / "run.json").write_text("{}")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text("{}")  # no run.json: not written by delift
    (tmp_path / "skipped").mkdir()
    (tmp_path / "skipped" / "skipped.json").write_text("{}")  # a budget-free baseline's skipped job
    assert [j.path for j in load_jobs([tmp_path])] == [job.resolve()]
