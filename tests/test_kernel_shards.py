"""Sharded kernels across block sizes, the merged kernel's seconds, debris of killed writers, kernel files of
another key (issue 24.1, issue 22 items 6 and 7)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_examples

from delift.data.prompts import PromptTemplate
from delift.kernel.blocks import BlockStore, adopted_block_size, block_size_for, iter_blocks, shard_of
from delift.kernel.cache import RUN_STARTED, KernelCache, remove_stale_temporaries, writing
from delift.kernel.config import KernelConfig
from delift.kernel.provider import KernelProvider

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = PromptTemplate()


def provider(spec, root: Path, **settings) -> KernelProvider:
    return KernelProvider(spec, TEMPLATE, KernelConfig(**settings), KernelCache(root), progress=False)


def fill_shards(spec, root: Path, examples, num_shards: int, **settings) -> list[dict]:
    return [provider(spec, root, num_shards=num_shards, shard=k, **settings).fill(examples, examples)
            for k in range(num_shards)]


def block_seconds(folder: Path) -> float:
    total = 0.0
    for path in folder.glob("*.npz"):
        with np.load(path) as data:
            total += float(data["seconds"])
    return total


def test_merge_at_another_block_size_reuses_the_shards_blocks(tiny_spec, tmp_path):
    """Shards tiled by 8, a merge run at block size 16: no block computed again, the unsharded kernel."""
    examples = make_examples(16)
    filled = fill_shards(tiny_spec, tmp_path / "sharded", examples, 2, block_size=8)
    assert [f["blocks_computed"] for f in filled] == [3, 3] and filled[1]["complete"]  # 2 row tiles x (1 + 2)

    merging = provider(tiny_spec, tmp_path / "sharded", block_size=16)
    merging._model = "must not be needed"  # every entry is on disk: the merge runs no model
    merged = merging.utility(examples, examples)
    assert merged.meta["blocks_computed"] == 0 and merged.meta["blocks_skipped"] == 6
    assert merged.meta["block_size"] == 8
    assert not (tmp_path / "sharded" / filled[0]["key"] / "tiles16").exists()

    same_tiles = provider(tiny_spec, tmp_path / "single8", block_size=8).utility(examples, examples)
    assert np.array_equal(merged.uf, same_tiles.uf) and np.array_equal(merged.d_zero, same_tiles.d_zero)
    unsharded = provider(tiny_spec, tmp_path / "single16", block_size=16).utility(examples, examples)
    np.testing.assert_allclose(merged.uf, unsharded.uf, atol=1e-6, rtol=0)

    # seconds: the shards' compute time, block by block (it was the merge run's own 0.0)
    on_disk = block_seconds(tmp_path / "sharded" / filled[0]["key"] / "tiles8")
    assert merged.meta["seconds"] == pytest.approx(on_disk) and 0 < on_disk <= sum(f["seconds"] for f in filled)
    assert KernelCache(tmp_path / "sharded").load(filled[0]["key"]).meta["seconds"] == pytest.approx(on_disk)


def test_sharding_splits_a_small_kernel_at_the_default_block_size(tiny_spec, tmp_path):
    """16 x 16 at block size 256 is one one-shot block; with 2 shards it is tiled by 8, each shard scoring pairs."""
    assert block_size_for(256, 16, 16, 1) == 256  # unsharded runs keep kernel.block_size
    assert block_size_for(256, 16, 16, 2) == 8  # 2 x 2 one-shot tiles: shards 1, 0 / 0, 1 by index
    assert block_size_for(256, 16, 16, 4) == 4  # at 8 or 6 (t = 2, 3) shard 3 or 0 owns no one-shot tile
    assert block_size_for(256, 1000, 1000, 2) == 256  # large enough already
    assert block_size_for(2, 2, 3, 2) == 2  # blocks z(0) c0(1) c1(0): both shards score pairs
    assert block_size_for(256, 2, 2, 8) == 1  # 4 pairs cannot feed 8 shards: the finest tiling
    for n, m, shards in ((16, 16, 4), (5, 40, 3), (40, 5, 3), (9, 7, 5)):
        size = block_size_for(256, n, m, shards)
        owners = {shard_of(b, shards) for b in iter_blocks(n, m, size) if b.col is not None}
        assert owners == set(range(shards)), (n, m, shards, size)

    examples = make_examples(6)
    filled = fill_shards(tiny_spec, tmp_path / "sharded", examples, 2)  # block_size 256 -> 3
    assert all(f["pairs"] > 0 for f in filled) and sum(f["pairs"] for f in filled) == 36
    assert sorted(p.name for p in (tmp_path / "sharded" / filled[0]["key"]).iterdir()) == [".writers.lock",
                                                                                           "tiles3"]
    merging = provider(tiny_spec, tmp_path / "sharded")
    merging._model = "must not be needed"
    merged = merging.utility(examples, examples)
    assert merged.meta["blocks_computed"] == 0 and merged.meta["block_size"] == 3
    unsharded = provider(tiny_spec, tmp_path / "single").utility(examples, examples)
    np.testing.assert_allclose(merged.uf, unsharded.uf, atol=1e-6, rtol=0)


def test_a_run_continues_in_the_tiling_that_holds_most_of_its_blocks(tmp_path):
    ids = [str(i) for i in range(8)]
    for size, kept in ((2, 3), (4, 2)):  # tiles2: 3 of 4 x 5 = 20 blocks; tiles4: 2 of 2 x 3 = 6 blocks
        store = BlockStore(tmp_path, "k", size, ids, ids)
        for block in list(store.blocks())[:kept]:
            store.save(block, np.zeros(store.tile_shape(block)), {})
    (tmp_path / "k" / "tiles5").mkdir()  # an empty folder holds nothing to reuse
    assert adopted_block_size(tmp_path, "k", 8, 8, 8) == 4  # 33 % beats 15 %
    assert adopted_block_size(tmp_path, "k", 2, 8, 8) == 4
    assert adopted_block_size(tmp_path, "other", 8, 8, 8) == 8  # nothing on disk: kernel.block_size
    store = BlockStore(tmp_path, "k", 2, ids, ids)
    for block in list(store.blocks())[3:7]:  # now 7 of 20 = 35 %
        store.save(block, np.zeros(store.tile_shape(block)), {})
    assert adopted_block_size(tmp_path, "k", 4, 8, 8) == 2


# ---- issue 22.6: temporary files of killed writers ----------------------------------------------------------

def test_stale_temporary_block_files_are_removed_fresh_or_locked_ones_kept(tiny_spec, tmp_path, caplog):
    examples = make_examples(4)
    first = provider(tiny_spec, tmp_path, block_size=2)
    kernel = first.utility(examples, examples)
    store = first.block_store(examples, examples)
    stale, fresh = store.folder / ".one_r0_c1.npz.k2x9q1.tmp", store.folder / ".zero_r1.npz.a7b3c4.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half a block")
    os.utime(stale, (RUN_STARTED - 60, RUN_STARTED - 60))  # written before this run started
    first.cache.path(store.key).unlink()  # the merged file, so the next run looks at its blocks

    with writing(store.lock):  # a live writer: nothing can be proved stale
        assert store.remove_stale_temporaries() == [] and stale.exists()
    with caplog.at_level("WARNING", logger="delift.kernel"):
        again = provider(tiny_spec, tmp_path, block_size=2).utility(examples, examples)
    assert not stale.exists() and fresh.exists()  # the fresh one may be a live write of this run's time
    assert again.meta["blocks_computed"] == 0 and np.array_equal(again.uf, kernel.uf)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(stale) in warnings[0], warnings


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from delift.fsutil import atomic_write
    from delift.kernel.cache import writing

    def write(handle):
        handle.write(b"half a block")
        handle.flush()
        print("writing", flush=True)
        time.sleep(600)

    folder = Path(sys.argv[1])
    with writing(folder.parent / ".writers.lock"):
        atomic_write(folder / "one_r0_c0.npz", write)
""")


def test_kill_9_during_a_block_write_leaves_a_temporary_file_a_later_run_removes(tmp_path):
    folder = tmp_path / "key" / "tiles2"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(folder)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing", child.stderr.read()[-2000:]
        temporary = list(folder.glob(".*.tmp"))
        assert len(temporary) == 1
        assert remove_stale_temporaries(folder, folder.parent / ".writers.lock", time.time() + 1) == []  # alive
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert temporary[0].exists() and not (folder / "one_r0_c0.npz").exists()  # the debris of issue 22.6
    started = time.time() + 1  # a later run
    assert remove_stale_temporaries(folder, folder.parent / ".writers.lock", started) == temporary
    assert list(folder.iterdir()) == []


# ---- issue 22.7: a kernel file copied over another key's file -------------------------------------------------

def test_kernel_file_of_another_key_is_a_damaged_entry_named_and_recomputed(tiny_spec, tmp_path, caplog):
    pool, other = make_examples(3), make_examples(4, "o")
    cache = KernelCache(tmp_path)
    kernel = provider(tiny_spec, tmp_path).utility(pool, pool)
    provider(tiny_spec, tmp_path).utility(other, other)
    key = kernel.meta["key"]
    other_file = next(p for p in tmp_path.glob("*.npz") if p.stem != key)
    shutil.copyfile(other_file, cache.path(key))  # rows/columns of another pool under this key

    with caplog.at_level("WARNING", logger="delift.kernel"):
        rebuilt = provider(tiny_spec, tmp_path).utility(pool, pool)
    assert rebuilt.meta["cached"] is False and rebuilt.target_ids == kernel.target_ids
    np.testing.assert_array_equal(rebuilt.uf, kernel.uf)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(cache.path(key)) in warnings[0] and other_file.stem in warnings[0], warnings
    assert cache.load(key).target_ids == kernel.target_ids  # the file was written again with this key's kernel


def test_kernel_file_whose_ids_are_not_the_requested_ones_is_a_miss(tiny_spec, tmp_path, caplog):
    pool = make_examples(3)
    kernel = provider(tiny_spec, tmp_path).utility(pool, pool)
    cache, key = KernelCache(tmp_path), kernel.meta["key"]
    moved = replace(kernel, target_ids=["ex0", "ex2", "ex1"], meta={})  # this key, rows in another order
    cache.save(key, moved, {})
    assert cache.load(key) is not None  # without ids to compare, it looks sound
    with caplog.at_level("WARNING", logger="delift.kernel"):
        assert cache.load(key, kernel.target_ids, kernel.candidate_ids) is None
    assert str(cache.path(key)) in caplog.text and "first difference at position 1" in caplog.text
