"""Kernel blocks on disk: resume after a real kill, two shards merged, the sharded pipeline mode."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_examples

from delift.data.prompts import PromptTemplate
from delift.kernel.cache import KernelCache
from delift.kernel.config import KernelConfig
from delift.kernel.provider import IncompleteKernelError, KernelProvider

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = PromptTemplate()

# Computes a 6 x 6 kernel in 2 x 2 tiles (3 row tiles x (1 zero-shot + 3 one-shot) = 12 blocks);
# SLOW=1 sleeps after every one-shot tile so the parent can kill it mid-run.
CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import make_examples
    import delift.kernel.provider as provider_module
    from delift.data.prompts import PromptTemplate
    from delift.kernel.cache import KernelCache
    from delift.kernel.config import KernelConfig
    from delift.models.config import ModelConfig

    if sys.argv[2] == "1":
        score = provider_module.score_one_shot
        def slow(*args, **kwargs):
            out = score(*args, **kwargs)
            time.sleep(0.4)
            return out
        provider_module.score_one_shot = slow
    spec = ModelConfig(name="tiny", source="tiny_random", seed=0, dtype="float32", cache_dir=sys.argv[1] + "/models")
    provider = provider_module.KernelProvider(spec, PromptTemplate(), KernelConfig(block_size=2),
                                              KernelCache(sys.argv[1] + "/kernels"), progress=False)
    examples = make_examples(6)
    kernel = provider.utility(examples, examples)
    np.save(sys.argv[1] + "/uf.npy", kernel.uf)
    print(json.dumps({{k: kernel.meta[k] for k in ("blocks_computed", "blocks_skipped")}}))
""")


def run_child(root: Path, slow: bool) -> subprocess.Popen:
    script = root / "child.py"
    script.write_text(CHILD.format(tests=str(REPO / "tests")))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, str(script), str(root), "1" if slow else "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # a subprocess killed with SIGKILL, then resumed
def test_killed_run_resumes_from_its_blocks_and_ends_bit_identical(tiny_spec, tmp_path):
    child = run_child(tmp_path, slow=True)
    blocks = lambda: sorted((tmp_path / "kernels").glob("*/tiles2/*.npz"))  # noqa: E731
    deadline = time.time() + 120
    while len(blocks()) < 3 and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = len(blocks())
    assert child.returncode == -signal.SIGKILL and 3 <= done < 12, (done, child.stderr.read()[-2000:])
    assert not list((tmp_path / "kernels").glob("*.npz"))  # no merged kernel yet

    restarted = run_child(tmp_path, slow=False)
    out, err = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, err[-3000:]
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts == {"blocks_computed": 12 - done, "blocks_skipped": done}

    # an uninterrupted run in this process, in a different cache, same tiling
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2), KernelCache(tmp_path / "clean"),
                              progress=False)
    clean = provider.utility(make_examples(6), make_examples(6))
    assert clean.meta["blocks_computed"] == 12
    assert np.array_equal(np.load(tmp_path / "uf.npy"), clean.uf)


def test_two_shards_merge_to_the_single_process_kernel(tiny_spec, tmp_path, monkeypatch):
    targets, candidates = make_examples(5), make_examples(6, "c")
    settings = KernelConfig(block_size=2, num_shards=2)
    single = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2), KernelCache(tmp_path / "single"),
                            progress=False).utility(targets, candidates)

    cache = KernelCache(tmp_path / "sharded")
    first = KernelProvider(tiny_spec, TEMPLATE, replace(settings, shard=0), cache, progress=False)
    filled = first.fill(targets, candidates)
    n_blocks = 3 * (1 + 3)
    assert filled["blocks_computed"] == n_blocks // 2 and filled["complete"] is False
    with pytest.raises(IncompleteKernelError, match="kernel.num_shards=2") as error:
        first.utility(targets, candidates)
    assert filled["key"] in str(error.value) and "one_r0_c0" in str(error.value)  # block 1 belongs to shard 1

    second = KernelProvider(tiny_spec, TEMPLATE, replace(settings, shard=1), cache, progress=False)
    assert second.fill(targets, candidates)["complete"] is True
    merged = second.utility(targets, candidates)
    assert merged.meta["blocks_computed"] == 0 and merged.meta["blocks_skipped"] == n_blocks // 2
    assert np.array_equal(merged.uf, single.uf) and np.array_equal(merged.d_zero, single.d_zero)
    assert merged.candidate_ids == single.candidate_ids

    # any block size gives the same numbers (fp32) and the same cache key
    other = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=4), KernelCache(tmp_path / "b4"),
                           progress=False)
    assert other.block_store(targets, candidates).key == filled["key"]
    np.testing.assert_allclose(other.utility(targets, candidates).uf, single.uf, atol=1e-6, rtol=0)


@pytest.mark.slow  # a CLI multirun in a subprocess
def test_sharded_pipeline_multirun_then_normal_run_uses_the_merged_kernel(tmp_path):
    """Two shards through the CLI (basic launcher); a merge in-process equals one process's kernel."""
    from delift.config.loader import compose_config
    from delift.run.usecases import load_usecase_data

    env = dict(os.environ, DELIFT_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    overrides = ["experiment=smoke", "data.sizes.train=6", "kernel.block_size=2", "kernel.num_shards=2"]
    cmd = [sys.executable, "-m", "delift", "-m", *overrides, "kernel.shard=0,1",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", "progress=false"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shards = sorted(json.loads(p.read_text())["kernel/shard_blocks_computed"]
                    for p in (tmp_path / "multirun").glob("*/shard.json"))
    assert len(shards) == 2 and sum(shards) == 3 * (1 + 3)

    cfg = compose_config([*overrides[:3], f"paths.cache_dir={tmp_path / 'cache'}"])
    pool = load_usecase_data(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets).pool
    spec = cfg.model
    settings = cfg.kernel
    merged = KernelProvider(spec, PromptTemplate(**asdict(cfg.prompt)), settings,
                            KernelCache(tmp_path / "cache" / "kernels"), progress=False)
    merged._model = "must not be needed"  # every block is on disk: the merge runs no model
    kernel = merged.utility(pool, pool)
    assert kernel.meta["blocks_computed"] == 0 and kernel.uf.shape == (len(pool), len(pool))
    single = KernelProvider(spec, PromptTemplate(**asdict(cfg.prompt)), replace(settings, num_shards=1),
                            KernelCache(tmp_path / "single"),
                            progress=False).utility(pool, pool)
    assert np.array_equal(kernel.uf, single.uf)


# Damaged files on disk: a 4 x 4 kernel in 2 x 2 tiles (2 row tiles x (1 zero-shot + 2 one-shot) = 6 blocks).
DAMAGE_EXAMPLES = 4


@pytest.fixture(scope="module")
def clean_tiles(tiny_spec, tmp_path_factory):
    """An undamaged run: its kernel and its cache folder (blocks, manifest, merged kernel)."""
    root = tmp_path_factory.mktemp("clean") / "kernels"
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2), KernelCache(root), progress=False)
    examples = make_examples(DAMAGE_EXAMPLES)
    kernel = provider.utility(examples, examples)
    assert kernel.meta["blocks_computed"] == 6
    return kernel, root, provider.block_store(examples, examples).key


def rerun_from(clean_tiles, tiny_spec, tmp_path, damage) -> tuple:
    """Copy the clean cache without its merged kernel, ``damage(folder)`` the tiles, run again."""
    _, root, key = clean_tiles
    copy = tmp_path / "kernels"
    shutil.copytree(root / key, copy / key)
    damaged = damage(copy / key / "tiles2")
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2), KernelCache(copy), progress=False)
    examples = make_examples(DAMAGE_EXAMPLES)
    return provider.utility(examples, examples), damaged


def assert_same_kernel(kernel, clean) -> None:
    for name in ("uf", "d_zero", "d_one"):
        assert np.array_equal(getattr(kernel, name), getattr(clean, name)), name
    assert kernel.target_ids == clean.target_ids and kernel.candidate_ids == clean.candidate_ids


def _truncate(fraction: float):
    def damage(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:int(path.stat().st_size * fraction)])
    return damage


def _wrong_shape(path: Path) -> None:
    np.savez(path.with_suffix(""), d=np.zeros((3, 3)), counts=np.zeros(6, dtype=np.int64))


def _non_finite(value: float):
    def damage(path: Path) -> None:
        with np.load(path) as data:
            d, counts = data["d"].copy(), data["counts"]
        d.flat[-1] = value
        np.savez(path.with_suffix(""), d=d, counts=counts)
    return damage


@pytest.mark.parametrize("block", ["one_r1_c0", "zero_r1"])
@pytest.mark.parametrize("damage,reason", [
    (_truncate(0.0), "unreadable"),  # an empty file
    (_truncate(0.5), "unreadable"),  # cut in half
    (_wrong_shape, "shape (3, 3)"),
    (_non_finite(np.nan), "non-finite"),
    (_non_finite(np.inf), "non-finite"),
])
def test_damaged_block_is_reported_removed_and_recomputed(clean_tiles, tiny_spec, tmp_path, caplog, block, damage,
                                                          reason):
    def damage_block(folder: Path) -> Path:
        damage(folder / f"{block}.npz")
        return folder / f"{block}.npz"

    with caplog.at_level("WARNING", logger="delift.kernel"):
        kernel, path = rerun_from(clean_tiles, tiny_spec, tmp_path, damage_block)
    assert kernel.meta["blocks_computed"] == 1 and kernel.meta["blocks_skipped"] == 5
    assert_same_kernel(kernel, clean_tiles[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and reason in warnings[0], warnings
    with np.load(path) as data:  # the block was written again, whole
        assert data["d"].shape == ((2,) if block.startswith("zero") else (2, 2))


@pytest.mark.parametrize("text", ["", '{"key": "abc", "shape": [4, ', "[1, 2]", '{"shape": [4, 4]}'])
@pytest.mark.parametrize("lose_a_block", [False, True])
def test_damaged_manifest_is_reported_and_rewritten(clean_tiles, tiny_spec, tmp_path, caplog, text, lose_a_block):
    def damage_manifest(folder: Path) -> Path:
        (folder / "manifest.json").write_text(text)
        if lose_a_block:
            (folder / "one_r0_c1.npz").unlink()
        return folder / "manifest.json"

    with caplog.at_level("WARNING", logger="delift.kernel"):
        kernel, path = rerun_from(clean_tiles, tiny_spec, tmp_path, damage_manifest)
    assert kernel.meta["blocks_computed"] == int(lose_a_block)
    assert_same_kernel(kernel, clean_tiles[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and "manifest" in warnings[0], warnings
    manifest = json.loads(path.read_text())
    assert manifest["shape"] == [4, 4] and manifest["target_ids"] == kernel.target_ids


def test_block_store_names_a_damaged_block_and_rereads_only_changed_files(tmp_path, caplog, monkeypatch):
    import delift.kernel.blocks as blocks_module
    from delift.kernel.blocks import BlockStore, CorruptBlockError

    store = BlockStore(tmp_path, "k", 2, ["a", "b", "c"], ["x", "y", "z"])
    zero, tile = next(store.blocks()), next(b for b in store.blocks() if b.name == "one_r1_c1")
    store.save(zero, np.array([0.5, 0.25]), {"pairs": 0, "tokens": 7})
    store.save(tile, np.array([[0.125]]), {"pairs": 1})  # the corner tile: one target x one candidate
    assert store.has(zero) and store.has(tile)
    reads = []
    monkeypatch.setattr(blocks_module, "_read_block", lambda path: reads.append(path) or pytest.fail("re-read"))
    assert store.has(zero) and store.has(tile) and reads == []  # unchanged since they were read whole
    monkeypatch.undo()
    d, counts = store.load(tile)
    assert d.shape == (1, 1) and counts["pairs"] == 1
    assert store.load(zero)[1]["tokens"] == 7

    store.save(tile, np.array([[0.125, 0.5]]), {"pairs": 2})  # a full-width tile where the last one is narrow
    with pytest.raises(CorruptBlockError, match=r"one_r1_c1\.npz.*shape \(1, 2\)"):
        store.load(tile)
    with caplog.at_level("WARNING", logger="delift.kernel"):
        assert not store.has(tile)
    assert not store.path(tile).exists() and str(store.path(tile)) in caplog.text
    assert [b.name for b in store.missing()] == [b.name for b in store.blocks() if b.name != "zero_r0"]

    store.path(zero).write_bytes(b"")  # damaged after a check: the new size is noticed
    with caplog.at_level("WARNING", logger="delift.kernel"):
        assert not store.has(zero)
    assert "zero_r0.npz" in caplog.text and "unreadable" in caplog.text
