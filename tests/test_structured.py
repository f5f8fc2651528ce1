"""data=structured (delift.data.structured) and the agreement numbers of bench_scale (delift.kernel.agreement)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy.stats import spearmanr

from delift.config.checks import ConfigError
from delift.config.loader import compose_config
from delift.data.config import StructuredConfig
from delift.data.loading import load_examples, load_splits
from delift.data.structured import MIX_TASK, generate_structured, load_structured
from delift.data.tasks import TASK_NAMES, TASKS, task_list
from delift.kernel import agreement

# (task, payload, what the input reads, the answer), worked out by hand
BY_HAND = [
    ("reverse_words", ("cat", "sun", "map"), "cat sun map", "map sun cat"),
    ("sort_digits", (5, 2, 8, 2), "5 2 8 2", "2 2 5 8"),
    ("upper_count", ("planet",), "planet", "PLANET 6"),
    ("initials", ("red", "box", "owl"), "red box owl", "R.B.O."),
    ("add", (12, 7), "12+7", "12+7=19"),
    ("last_letters", ("apple", "dog", "key"), "apple dog key", "e,g,y"),
    ("double_each", (3, 5, 19), "3 5 19", "6 10 38"),
    ("count_vowels", ("ocean",), "ocean", "vowels: 3"),
    ("bracket", ("sun", "map"), "sun map", "[sun] [map]"),
    ("shift_letters", ("zoo",), "zoo", "app"),
    ("max_number", (4, 97, 9), "4 97 9", "max 97"),
    ("repeat_three", ("cup",), "cup", "cup-cup-cup"),
    ("drop_vowels", ("table",), "table", "tbl"),
    ("parity", (3, 8, 30), "3 8 30", "O E E"),
    ("word_lengths", ("ink", "river"), "ink river", "3/5"),
    ("first_last", ("cat", "dog", "sun", "owl"), "cat dog sun owl", "cat ... owl"),
]


def cfg(**structured) -> dict:
    return {"name": "structured", "format": "structured", "structured": structured, "sizes": {}}


def test_every_task_is_checked_by_hand():
    assert sorted(task for task, *_ in BY_HAND) == sorted(TASK_NAMES)
    tasks = {task.name: task for task in TASKS}
    for name, payload, shown, answer in BY_HAND:
        assert (tasks[name].show(payload), tasks[name].answer(payload)) == (shown, answer), name


def test_generated_examples_follow_their_task():
    """Every generated example's output recomputed from its input text, independently of the task code."""
    recompute = {
        "reverse_words": lambda s: " ".join(s.split()[::-1]),
        "sort_digits": lambda s: " ".join(sorted(s.split(), key=int)),
        "upper_count": lambda s: f"{s.upper()} {len(s)}",
        "initials": lambda s: "".join(w[0].upper() + "." for w in s.split()),
        "add": lambda s: f"{s}={sum(int(x) for x in s.split('+'))}",
        "last_letters": lambda s: ",".join(w[-1] for w in s.split()),
        "double_each": lambda s: " ".join(str(int(x) * 2) for x in s.split()),
        "count_vowels": lambda s: f"vowels: {sum(s.count(v) for v in 'aeiou')}",
        "bracket": lambda s: " ".join(f"[{w}]" for w in s.split()),
        "shift_letters": lambda s: s.translate(str.maketrans("abcdefghijklmnopqrstuvwxyz",
                                                             "bcdefghijklmnopqrstuvwxyza")),
        "max_number": lambda s: f"max {max(int(x) for x in s.split())}",
        "repeat_three": lambda s: f"{s}-{s}-{s}",
        "drop_vowels": lambda s: "".join(c for c in s if c not in "aeiou") or "-",
        "parity": lambda s: " ".join("O" if int(x) % 2 else "E" for x in s.split()),
        "word_lengths": lambda s: "/".join(str(len(w)) for w in s.split()),
        "first_last": lambda s: f"{s.split()[0]} ... {s.split()[-1]}",
    }
    pool = generate_structured(len(TASK_NAMES), 12, seed=5)
    assert Counter(e.metadata["task"] for e in pool) == {name: 12 for name in TASK_NAMES}
    instructions = {task.name: task.instruction for task in TASKS}
    for example in pool:
        task = example.metadata["task"]
        assert example.output == recompute[task](example.input), example
        assert example.instruction == instructions[task] and example.source == "structured"
    assert len({e.id for e in pool}) == len(pool)
    assert max(len((e.instruction + e.input + e.output).split()) for e in pool) <= 16  # short: cheap exact kernels


def test_same_seed_same_pool_other_seed_other_pool():
    def rows(examples):
        return [json.dumps(e.to_dict(), sort_keys=True) for e in examples]

    first = load_examples(cfg(num_tasks=6, per_task=10, seed=3))
    assert rows(first) == rows(load_examples(cfg(num_tasks=6, per_task=10, seed=3)))
    other = load_examples(cfg(num_tasks=6, per_task=10, seed=4))
    assert rows(first) != rows(other)
    assert [e.metadata["task"] for e in first] != [e.metadata["task"] for e in other]  # shuffled differently


def test_sizes_tasks_and_splits_are_respected():
    pool = load_examples(cfg(num_tasks=3, per_task=7, seed=0))
    assert len(pool) == 21 and Counter(e.metadata["task"] for e in pool) == {n: 7 for n in TASK_NAMES[:3]}
    chosen = load_examples(cfg(num_tasks=2, per_task=4, tasks=["parity", "add", "bracket"]))
    assert Counter(e.metadata["task"] for e in chosen) == {"parity": 4, "add": 4}
    splits = load_splits({**cfg(num_tasks=4, per_task=10), "sizes": {"train": 25, "valid": 5, "test": 10}}, seed=1)
    assert splits.sizes == {"train": 25, "valid": 5, "test": 10}
    every = [e.id for part in (splits.train, splits.valid, splits.test) for e in part]
    assert len(set(every)) == 40
    assert len(load_examples({**cfg(num_tasks=4, per_task=10), "max_rows": 13})) == 13


def test_real_rows_mixed_in_from_the_shared_folder(tmp_path):
    rows = [{"instruction": f"Say {w}.", "input": "", "output": w} for w in ("one", "two", "three", "four")]
    rows.insert(2, {"instruction": "bad", "input": "", "output": ""})  # skipped
    (tmp_path / "alpaca").mkdir()
    (tmp_path / "alpaca" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = load_examples(cfg(num_tasks=2, per_task=3, mix_rows=3), shared_datasets=tmp_path)
    mixed = [e for e in pool if e.metadata["task"] == MIX_TASK]
    assert len(pool) == 9 and len(mixed) == 3 and {e.source for e in mixed} == {"alpaca"}
    assert {e.output for e in mixed} < {"one", "two", "three", "four"}
    _, record = load_structured(StructuredConfig(num_tasks=2, per_task=3, mix_rows=3), None, "structured", tmp_path)
    assert record["skipped_bad_rows"] == 1  # the empty-output row, counted, not dropped silently
    with pytest.raises(ValueError, match="mix_rows=5: .* has only 4 usable alpaca rows"):
        load_examples(cfg(num_tasks=2, per_task=3, mix_rows=5), shared_datasets=tmp_path)
    with pytest.raises(FileNotFoundError, match="data.structured.mix_file"):
        load_examples(cfg(num_tasks=2, per_task=3, mix_rows=1, mix_file="nowhere.jsonl"), shared_datasets=tmp_path)


@pytest.mark.parametrize("overrides, message", [
    (["data.structured.num_tasks=0"], "data.structured.num_tasks: 0: must be in [1, 16]"),
    (["data.structured.num_tasks=17"], "data.structured.num_tasks: 17: must be in [1, 16]"),
    (["data.structured.per_task=0"], "data.structured.per_task: 0: must be >= 1"),
    (["data.structured.tasks=[add,adding]"], "data.structured.tasks: unknown task(s) ['adding']"),
    (["data.structured.tasks=[add,parity]"], "data.structured.num_tasks: 8: must be in [1, 2]"),
    (["data.structured.mix_rows=-1"], "data.structured.mix_rows: -1: must be >= 0"),
    (["data.structured=null"], "data.structured: format structured needs"),
])
def test_bad_values_are_config_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as caught:
        compose_config(["experiment=smoke", "data=structured", *overrides])
    assert message in str(caught.value)


def test_the_data_config_composes_and_loads():
    data = compose_config(["data=structured"]).data
    splits = load_splits(data, seed=0)
    assert splits.sizes == {"train": 160, "valid": 0, "test": 40}
    assert {e.metadata["task"] for e in splits.train} == set(TASK_NAMES[:8])
    with pytest.raises(ValueError, match=r"num_tasks=0: must be in \[1, 16\]"):
        task_list(0)


# ------------------------------------------------------------------ agreement numbers, by hand

S = np.array([[9.0, 0.5, 0.1, 0.0],
              [0.4, 9.0, 0.0, 0.2],
              [0.0, 0.3, 9.0, 0.6],
              [0.1, 0.0, 0.7, 9.0]])
LABELS = ["a", "a", "b", "b"]


def test_fl_off_and_overlap_by_hand():
    # self-pairs 0: picks {0}: rows max over column 0 -> 0 + .4 + 0 + .1 = .5; picks {0, 2}: .1+.4+.0+.7 = 1.2
    assert agreement.fl_value_off(S, [0]) == pytest.approx(0.5)
    assert agreement.fl_value_off(S, [0, 2]) == pytest.approx(1.2)
    assert agreement.fl_value_off(S, [1, 3]) == pytest.approx(0.5 + 0.2 + 0.6 + 0.0)
    assert agreement.fl_off(S, [0, 2], [1, 3]) == pytest.approx(1.2 / 1.3)
    assert agreement.fl_value_off(S, []) == 0.0
    assert agreement.overlap([0, 2], [2, 3]) == 0.5


def test_coverage_block_means_and_target_share_by_hand():
    assert agreement.coverage([0, 1], LABELS, {"a", "b"}) == 0.5
    assert agreement.coverage([1, 3], LABELS, {"a", "b"}) == 1.0
    assert agreement.coverage([1, 3], LABELS + ["mix"], {"a", "b", "c", "d"}) == 0.5
    within, across = agreement.block_means(S, LABELS)
    assert within == pytest.approx((0.5 + 0.4 + 0.6 + 0.7) / 4)
    assert across == pytest.approx((0.1 + 0.0 + 0.0 + 0.2 + 0.0 + 0.3 + 0.1 + 0.0) / 8)
    # only task "a" counted: its one within pair both ways, no across pair
    within_a, across_a = agreement.block_means(S, LABELS, {"a"})
    assert within_a == pytest.approx(0.45) and np.isnan(across_a)
    assert agreement.target_share([0, 1, 2], LABELS, "a") == pytest.approx(2 / 3)
    assert agreement.base_rate(LABELS + ["b"], "a") == pytest.approx(0.4)


def test_off_diagonal_spearman_ignores_the_diagonal():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    mask = ~np.eye(6, dtype=bool)
    assert agreement.off_diagonal_spearman(a, b) == pytest.approx(spearmanr(a[mask], b[mask]).statistic)
    c = a.copy()
    np.fill_diagonal(c, -100.0)
    assert agreement.off_diagonal_spearman(a, c) == pytest.approx(1.0)
    assert agreement.off_diagonal_spearman(a, np.eye(6)) is None
    with pytest.raises(ValueError, match="square"):
        agreement.block_means(np.ones((2, 3)), ["a", "b"])


@pytest.mark.slow
def test_bench_scale_on_the_structured_pool(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("DELIFT_SHARED_DATASETS", root.parent / "shared" / "datasets"))
    if not (shared / "alpaca" / "train.jsonl").is_file():  # the structured pool mixes in real alpaca rows
        pytest.skip(f"no shared datasets at {shared} (clean clone): the structured pool's alpaca rows are not available")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DELIFT_CACHE_DIR": str(tmp_path / "models")}
    command = [sys.executable, str(root / "experiments" / "bench_scale.py"), "--model", "tiny_llama", "--pool",
               "structured", "--tasks", "4", "--per-task", "4", "--fractions", "0.5", "--neighbors", "3",
               "--learned-extra", "lr=1e-3,epochs=5", "--scale-sizes", "", "--threads", "1",
               "--cache-dir", str(tmp_path / "cache")]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("method "))
    table = lines[start + 1:lines.index("", start)]  # the main table, up to the blank line before the next
    rows = {line.split("  ")[0].strip(): line.split() for line in table}
    assert set(rows) == {"exact", "random (100 draws)", "learned f=0.5", "learned f=0.5 lr=0.001 epochs=5", "knn m=3"}
    assert rows["exact"][-2] in ("0.250", "0.500", "0.750", "1.000") and rows["exact"][-1] == "100.0"  # k/4 tasks
    assert rows["knn m=3"][-1] == "25.0"  # 16 x (3 + 1) of 256 pairs (no held-out Spearman)
    assert 0 < float(rows["random (100 draws)"][-1]) <= 1  # its coverage
    assert any(line.startswith("use case 2: target task reverse_words (4 examples as Q)") and "base rate 0.250" in line
               for line in lines)
    at = lines.index("mean UF off the diagonal, within one task vs across two tasks")
    name, within, across, ratio = lines[at + 2].split()  # the exact kernel's row, under the table's header
    assert name == "exact" and float(ratio) == pytest.approx(float(within) / float(across), rel=1e-2)


def test_results_on_the_structured_pool_carry_a_caveat():
    from delift.run.provenance import caveats

    config = compose_config(["experiment=smoke", "data=structured"])
    notes = caveats(config.model, {"data": config.data}, None)
    assert any(note.startswith("structured synthetic tasks generated by delift") for note in notes)
