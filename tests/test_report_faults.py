"""delift-report against bad input: unreadable job files, a hostile name, --out on a file, a kill mid-report;
and what it writes beside the tables: figure names, captions and cache flags."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_report_support import rows, write_job

from delift.report.cli import build_report, main
from delift.report.folder import slug
from delift.report.jobs import cache_reads

ROOT = Path(__file__).resolve().parents[1]


def sweep(root: Path, name: str = "synth") -> Path:
    """Random and DELIFT, seeds 0 and 1, at budgets 0.25 and 0.5: eight good jobs."""
    for budget in (0.25, 0.5):
        for seed in (0, 1):
            for selector, score in (("random", 0.3), ("delift", 0.4)):
                value = score + budget / 10 + seed / 100
                write_job(root, f"{selector}_{budget}_{seed}", selector, seed, {"qlora/bge": value, "subset/size": 4,
                                                                               "pool/size": 16},
                          config={"budget_fraction": budget, "name": name},
                          predictions=rows("qlora", {"bge": [value] * 3}))
    return root


BAD_FILES = {  # the probe's cases: file, content
    "garbage": ("metrics.json", "garbage{"),
    "list": ("metrics.json", "[1,2]"),
    "empty": ("metrics.json", ""),
    "truncated": ("predictions.jsonl", '{"evaluation": "qlora", "split": "test", "id": "ex0", "bge": 0.5}\n{"evalua'),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_job_is_skipped_with_a_warning_naming_it_and_counted(tmp_path, case, caplog):
    root = sweep(tmp_path / "sweep")
    name, content = BAD_FILES[case]
    bad = root / "delift_0.5_1" / name
    bad.write_text(content)
    with caplog.at_level(logging.WARNING):
        done = build_report([root], out=tmp_path / "rep", resamples=50, draw=False)
    assert any(str(bad.resolve()) in r.getMessage() for r in caplog.records)
    assert done["skipped"] == [str(bad.resolve())]
    delift = {e["setting_label"]: e["n"] for e in done["frame"] if e["selector"] == "delift"}
    assert delift == {"budget_fraction=0.25": 2, "budget_fraction=0.5": 1}  # the other seven jobs are there
    report = done["report"].read_text()
    assert "7 jobs; 1 skipped (unreadable result files, see the notes)" in report
    assert f"- skipped, unreadable: {bad.resolve()}: " in report
    jobs_csv = (tmp_path / "rep" / "jobs.csv").read_text()
    assert "delift_0.5_1" not in jobs_csv and "delift_0.5_0" in jobs_csv


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_strict_stops_at_a_bad_job_naming_the_file(tmp_path, case, capsys):
    root = sweep(tmp_path / "sweep")
    name, content = BAD_FILES[case]
    bad = root / "random_0.25_0" / name
    bad.write_text(content)
    with pytest.raises(SystemExit) as stop:
        main([str(root), "--out", str(tmp_path / "rep"), "--strict", "--no-figures"])
    message = str(stop.value.code)
    assert message.startswith(f"{bad.resolve()}: ") and "--strict" in message  # a message, exit status 1
    assert not (tmp_path / "rep").exists()


def test_a_run_named_dot_dot_stays_inside_results(tmp_path, monkeypatch):
    sweep(tmp_path / "work" / "sweep", name="..")
    monkeypatch.chdir(tmp_path / "work")
    done = build_report([Path("sweep")], resamples=50, draw=False)
    assert done["out"] == Path("results") / "all" and (tmp_path / "work" / "results" / "all" / "report.md").exists()
    assert not (tmp_path / "table.md").exists() and not (tmp_path / "work" / "table.md").exists()
    assert [slug(t) for t in ("..", ".", "a/../b", "/etc", "budget=0.5, x=y")] == ["all", "all", "a_.._b", "etc",
                                                                                "budget-0.5_x-y"]
    assert all("/" not in slug(t) and slug(t) not in (".", "..") for t in ("../..", "./.", "..\\..", "~/x"))


def test_out_on_an_existing_file_or_a_foreign_folder_is_a_clean_error(tmp_path):
    root = sweep(tmp_path / "sweep")
    (tmp_path / "file.txt").write_text("keep")
    with pytest.raises(SystemExit, match="file.txt: a file, not a folder"):
        main([str(root), "--out", str(tmp_path / "file.txt"), "--no-figures"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit, match="not a delift-report folder"):
        main([str(root), "--out", str(tmp_path / "mine"), "--no-figures"])
    assert (tmp_path / "file.txt").read_text() == "keep" and (tmp_path / "mine" / "notes.txt").read_text() == "keep"


KILLER = """
import os, signal, sys
from delift.report import cli

write = cli.write_report

def killed(*args, **kwargs):
    out = args[3]
    (out / "table.md").write_text("half")  # some files written, then kill -9
    os.kill(os.getpid(), signal.SIGKILL)

cli.write_report = killed
cli.main([sys.argv[1], "--out", sys.argv[2], "--no-figures", "--resamples", "50"])
"""


def test_a_kill_mid_report_leaves_the_previous_report_whole_and_no_half_one(tmp_path):
    root = sweep(tmp_path / "sweep")
    out = tmp_path / "rep"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), str(root), str(out)], env=env, cwd=tmp_path)
    assert killed.returncode == -9 and not out.exists()  # no half report under the name
    main([str(root), "--out", str(out), "--no-figures", "--resamples", "50"])
    before = (out / "report.md").read_text()
    assert not list(tmp_path.glob(".rep.*"))  # the killed writer's hidden folder was removed
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLER), str(root), str(out)], env=env, cwd=tmp_path)
    assert killed.returncode == -9 and (out / "report.md").read_text() == before  # the previous report stays
    assert (out / "table.md").read_text() != "half"


def test_figure_files_and_captions_say_protocol_setting_method_and_seed(tmp_path):
    root = sweep(tmp_path / "sweep")
    write_job(root, "ifd_0.25_0", "ifd", 0, {"qlora/bge": 0.2, "subset/size": 4, "pool/size": 16},
              config={"budget_fraction": 0.25}, predictions=rows("qlora", {"bge": [0.2] * 3}),
              subset={"gains": [0.9, 0.8], "info": {"cache_hits": 16, "scored": 0, "scores": {"a": 0.9}}})
    write_job(root, "delift_se_0.25_0", "delift_se", 0, {"qlora/bge": 0.2, "subset/size": 4, "pool/size": 16},
              config={"budget_fraction": 0.25}, predictions=rows("qlora", {"bge": [0.2] * 3}),
              subset={"gains": [0.9, 0.8], "info": {"positive_gain_picks": 2}})
    done = build_report([root], out=tmp_path / "rep", resamples=50)
    names = sorted(p.name for p in done["figures"])
    assert names == ["bars_qlora_budget_fraction-0.25.png", "bars_qlora_budget_fraction-0.5.png",
                     "budget_qlora.png", "gains_delift_se_budget_fraction-0.25_seed0.png",
                     "gains_ifd_budget_fraction-0.25_seed0.png"]  # no Full Data run: no PIR, no survey figure
    assert all(p.exists() and p.parent == tmp_path / "rep" / "figures" for p in done["figures"])
    report = done["report"].read_text()
    assert ("*Figure 1 (`bars_qlora_budget_fraction-0.25.png`): QLoRA scores per method at budget_fraction=0.25: "
            "seed mean, 95 % t-interval over seeds (clipped to the metric's range) as whiskers") in report
    assert "(`gains_ifd_budget_fraction-0.25_seed0.png`): IFD, budget_fraction=0.25, seed 0: the score of each pick" in report
    assert ("(`budget_qlora.png`): QLoRA score against the budget fraction: seed mean, 95 % t-interval over seeds "
            "(clipped to the metric's range) as bands.*") in report  # no Full Data or Initial ran: no line named
    assert "(`gains_delift_se_budget_fraction-0.25_seed0.png`): DELIFT (SE), budget_fraction=0.25, seed 0: the marginal gain" in report
    # IFD read its scores from the cache: flagged in the notes and beside its selection time
    assert ("- IFD at budget_fraction=0.25: 1 of 1 seeds read from the cache (seed 0: 16 of 16 scores); their "
            "time/selection_s leaves out computing it") in report
    survey_md = (tmp_path / "rep" / "survey.md").read_text()
    ifd_row = next(line for line in survey_md.splitlines() if "| IFD |" in line)
    assert ifd_row.endswith(" (cache 1/1) |")


def test_cache_reads_are_found_wherever_a_selector_records_them():
    delift = {"kernel_cached": True, "kernels": {"pool_pool": {"key": "k", "cached": True},
                                                 "pool_query": {"key": "q", "cached": False}}, "positive_gain_picks": 3}
    assert cache_reads(delift) == ["pool_pool kernel"]
    assert cache_reads({"kernel_cached": True, "kernel_key": "k"}) == ["kernel"]  # Nuggets
    assert cache_reads({"scored": 20, "cache_hits": 12, "scores": {"cached": True}}) == ["12 of 32 scores"]  # IFD
    selectit = {"models": [{"scored": 8, "cache_hits": 0}, {"scored": 0, "cache_hits": 8}]}
    assert cache_reads(selectit) == ["8 of 8 scores"]
    assert cache_reads({"computed": 0, "cache_hits": 40, "checkpoints": []}) == ["40 of 40 scores"]  # LESS
    assert cache_reads({"kernel_approximation": {"pool_pool": {"sample_cached": True}}}) == ["kernel sample"]
    assert cache_reads({"kernel_cached": False, "cache_hits": 0, "requested_budget": 4}) == []
