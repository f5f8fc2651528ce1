"""LESS projection: the block-generated Rademacher matrix against its definition and a materialised product."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from delift.selection.less.projection import (
    UNIT_ROWS,
    BlockedScratch,
    RademacherProjection,
    normalise_rows,
    signs_from_bits,
    unit_bits,
)


def definition(dim_in: int, dim_out: int, seed: int) -> np.ndarray:
    """The matrix written straight from the module's definition: Philox keyed (seed, unit), bit b -> 1 - 2b,
    row-major, least significant bit first (an independent bit-by-bit decoding)."""
    rows = []
    for unit in range(math.ceil(dim_in / UNIT_ROWS)):
        words = np.random.Philox(key=np.array([seed, unit], dtype=np.uint64)).random_raw(UNIT_ROWS * dim_out // 64)
        bits = [(int(word) >> k) & 1 for word in words for k in range(64)]
        rows.append(1 - 2 * np.array(bits, dtype=np.int64).reshape(UNIT_ROWS, dim_out))
    return np.concatenate(rows)[:dim_in]


def test_materialised_matrix_matches_the_definition():
    projection = RademacherProjection(300, 16, seed=5, block_rows=128)
    assert np.array_equal(projection.materialise().numpy(), definition(300, 16, 5))


@pytest.mark.parametrize("block_rows", [128, 256, 512])
def test_block_size_changes_nothing_and_blocks_are_reproducible_alone(block_rows):
    full = RademacherProjection(700, 24, seed=11, block_rows=128).materialise()
    projection = RademacherProjection(700, 24, seed=11, block_rows=block_rows)
    assert torch.equal(projection.materialise(), full)
    last = projection.n_blocks - 1
    start, stop = projection.block_range(last)
    assert torch.equal(projection.block(last), full[start:stop])  # generated on its own, without the others


def test_block_projection_equals_the_materialised_product():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((5, 1000))).float()
    projection = RademacherProjection(1000, 32, seed=3, block_rows=256)
    expected = x.double() @ projection.materialise().double()
    torch.testing.assert_close(projection.project_rows(x).double(), expected, rtol=1e-5, atol=1e-4)


def test_same_seed_same_matrix_for_both_sides_and_any_chunking():
    rng = np.random.default_rng(1)
    train, target = (torch.from_numpy(rng.standard_normal((n, 640))) for n in (6, 3))
    side_a = RademacherProjection(640, 64, seed=9, block_rows=128, dtype=torch.float64)
    side_b = RademacherProjection(640, 64, seed=9, block_rows=384, dtype=torch.float64)
    assert torch.equal(side_a.materialise(), side_b.materialise())
    both = side_a.project_rows(torch.cat([train, target]))
    torch.testing.assert_close(torch.cat([side_a.project_rows(train), side_b.project_rows(target)]), both,
                               rtol=1e-12, atol=1e-10)
    other = RademacherProjection(640, 64, seed=10, block_rows=128, dtype=torch.float64).materialise()
    assert not torch.equal(other, side_a.materialise())


def test_device_unpacking_equals_numpy_unpacking():
    packed = unit_bits(4, 7, 40)
    as_numpy = signs_from_bits(packed, UNIT_ROWS, 40, torch.device("cpu"), torch.float32, use_numpy=True)
    as_shifts = signs_from_bits(packed, UNIT_ROWS, 40, torch.device("cpu"), torch.float32, use_numpy=False)
    assert torch.equal(as_numpy, as_shifts) and set(as_numpy.unique().tolist()) == {-1.0, 1.0}


def test_projected_cosine_is_close_to_the_exact_cosine():
    rng = np.random.default_rng(2)
    d = 1024
    u = rng.standard_normal(3000)
    pairs = [(u, u + rng.standard_normal(3000) * s) for s in (0.3, 1.0, 3.0)] + [(u, rng.standard_normal(3000))]
    projection = RademacherProjection(3000, d, seed=0, block_rows=1024)
    for a, b in pairs:
        exact = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        pa, pb = normalise_rows(projection.project_rows(torch.from_numpy(np.stack([a, b])).float())).double()
        assert abs(float(pa @ pb) - exact) < 4 / math.sqrt(d)


def test_normalise_rows_keeps_zero_rows():
    rows = normalise_rows(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.equal(rows, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_blocked_scratch_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((7, 300)).astype(np.float32)
    with BlockedScratch(tmp_path / "s.bin", 7, 300, 128) as scratch:
        scratch.write_rows(0, matrix[:4])
        scratch.write_rows(4, matrix[4:])
        for start in (0, 128, 256):
            assert np.array_equal(scratch.read_cols(start, min(start + 128, 300)), matrix[:, start:start + 128])
        with pytest.raises(ValueError, match="not one block"):
            scratch.read_cols(0, 64)
    assert not (tmp_path / "s.bin").exists()


def test_block_rows_must_be_whole_units():
    with pytest.raises(ValueError, match="multiple of 128"):
        RademacherProjection(10, 4, seed=0, block_rows=100)
