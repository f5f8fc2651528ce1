"""experiments/validity.py: structured exact match, t-intervals, paired differences against Random, and the
printed lines, on hand-made prediction files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
import validity  # noqa: E402  (experiments/validity.py)
import validity_stats as vstats  # noqa: E402

T95_2 = 4.302652729911275  # t quantile 0.975 with 2 degrees of freedom (tables)


def test_structured_exact_match_takes_the_first_line_stripped():
    assert vstats.structured_em(" 3+4=7\n### more", "3+4=7") == 1.0
    assert vstats.structured_em("3+4=7 ", " 3+4=7") == 1.0
    assert vstats.structured_em("3+4=8", "3+4=7") == 0.0
    assert vstats.structured_em("", "3+4=7") == 0.0
    assert vstats.structured_em("\n\n3+4=7", "3+4=7") == 1.0  # leading blank lines are stripped first


def write_job(root: Path, name: str, selector: str, seed: int, hits: list[int], split: str = "test") -> None:
    folder = root / name
    (folder / ".hydra").mkdir(parents=True)
    (folder / "subset.json").write_text(json.dumps({"selector": selector}))
    (folder / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
    rows = [{"evaluation": "lora", "split": split, "id": f"e{i}", "reference": "1+1=2",
             "generation": "1+1=2" if hit else "1+1=3"} for i, hit in enumerate(hits)]
    rows.append({"evaluation": "icl", "split": split, "id": "e0", "reference": "x", "generation": "x"})  # ignored
    (folder / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.fixture
def sweep(tmp_path):
    # random: seed means 0.25, 0.50, 0.25; rds: 0.75, 0.75, 0.50 -> diffs 0.50, 0.25, 0.25
    write_job(tmp_path, "0", "random", 0, [1, 0, 0, 0])
    write_job(tmp_path, "1", "random", 1, [1, 1, 0, 0])
    write_job(tmp_path, "2", "random", 2, [0, 0, 1, 0])
    write_job(tmp_path, "3", "rds", 0, [1, 1, 1, 0])
    write_job(tmp_path, "4", "rds", 1, [1, 1, 0, 1])
    write_job(tmp_path, "5", "rds", 2, [0, 1, 1, 0])
    (tmp_path / "6").mkdir()  # a job without predictions (skipped) is not read
    (tmp_path / "6" / "subset.json").write_text(json.dumps({"selector": "rds"}))
    return tmp_path


def test_seed_means_and_t_interval_by_hand(sweep):
    jobs = vstats.read_sweep([sweep])
    assert len(jobs) == 6
    rds = vstats.seed_means([j for j in jobs if j.selector == "rds"], "test")
    assert rds == {0: 0.75, 1: 0.75, 2: 0.5}
    mean, lo, hi = vstats.t_interval(list(rds.values()))
    sd = np.sqrt(((0.75 - 2 / 3) ** 2 * 2 + (0.5 - 2 / 3) ** 2) / 2)
    assert mean == pytest.approx(2 / 3)
    assert hi - mean == pytest.approx(T95_2 * sd / np.sqrt(3))
    assert mean - lo == pytest.approx(T95_2 * sd / np.sqrt(3))


def test_paired_t_and_bootstrap_against_random(sweep):
    jobs = vstats.read_sweep([sweep])
    rds = [j for j in jobs if j.selector == "rds"]
    rnd = [j for j in jobs if j.selector == "random"]
    diff, lo, hi, n = vstats.paired_t(vstats.seed_means(rds, "test"), vstats.seed_means(rnd, "test"))
    sd = np.std([0.5, 0.25, 0.25], ddof=1)
    assert (diff, n) == (pytest.approx(1 / 3), 3)
    assert hi - diff == pytest.approx(T95_2 * sd / np.sqrt(3))
    point, blo, bhi = vstats.paired_bootstrap(rds, rnd, "test", resamples=4000)
    assert point == pytest.approx(1 / 3)
    assert blo < point < bhi and -1 <= blo and bhi <= 1
    # a method identical to its baseline: every resampled difference is 0
    same = vstats.paired_bootstrap(rnd, rnd, "test", resamples=100)
    assert same == (0.0, 0.0, 0.0)


def test_the_last_lines_are_one_per_selector(sweep, capsys):
    validity.main(["--usecase", "uc2", "--seeds", "3", "--selectors", "random,rds,less", "--dir", str(sweep)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3].startswith("validity uc2 random: target_em 0.333 [")
    assert lines[-2].startswith("validity uc2 rds: target_em 0.667 [") and " vs random +0.333 [" in lines[-2]
    assert lines[-1] == "validity uc2 less: target_em n/a (no finished job)"
    low = float(lines[-3].split("[")[1].split(",")[0])
    assert low == 0.0  # random's t-interval, 1/3 -/+ 4.30 * 0.144 / sqrt(3) = [-0.025, 0.69], is clipped at 0
    # --seeds 2 reads seeds 0 and 1 only: rds 0.75, 0.75 vs random 0.25, 0.50
    validity.main(["--usecase", "uc2", "--seeds", "2", "--selectors", "rds", "--dir", str(sweep)])
    assert "target_em 0.750 [0.750, 0.750] vs random +0.375" in capsys.readouterr().out.strip().splitlines()[-1]


def test_flqmi_greedy_by_hand():
    import validity_flmi

    # Q x pool: q0 likes p0 (0.9) and p1 (0.8); q1 likes p2 (0.5)
    s = np.array([[0.9, 0.8, 0.0], [0.0, 0.1, 0.5]])
    # eta 0: gains p0 0.9, p1 0.9, p2 0.5 -> p0 (lowest index); then p1 0 + 0.1 = 0.1, p2 0.5 -> p2
    assert validity_flmi.flqmi_greedy(s, 2, 0.0) == ([0, 2], [pytest.approx(0.9), pytest.approx(0.5)])
    # eta 1 adds max_q s[q, j] = 0.9, 0.8, 0.5: first p0 (1.8 vs 1.7 vs 1.0); then p1 0.1 + 0.8 = 0.9 < p2 1.0
    picks, gains = validity_flmi.flqmi_greedy(s, 2, 1.0)
    assert picks == [0, 2] and gains == [pytest.approx(1.8), pytest.approx(1.0)]
