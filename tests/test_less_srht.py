"""LESS's SRHT projection against its explicit matrix (scipy's Hadamard matrix), its JL bound and its seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from delift.selection.less.projection import normalise_rows
from delift.selection.less.srht import MASK64, SRHTProjection, fwht, next_power_of_two, sylvester


def explicit_matrix(dim_in: int, dim_out: int, seed: int) -> np.ndarray:
    """(dim_in x dim_out) M with y = x M, written from the definition with scipy's Sylvester matrix:
    M = diag(s) H_N[:dim_in, rows] / sqrt(dim_out), s and rows decoded bit by bit / drawn independently here."""
    padded = 1 << math.ceil(math.log2(dim_in)) if dim_in > 1 else 1
    words = np.random.Philox(key=np.array([seed, MASK64], dtype=np.uint64)).random_raw(math.ceil(dim_in / 64))
    signs = np.array([1 - 2 * ((int(words[i // 64]) >> (i % 64)) & 1) for i in range(dim_in)], dtype=np.float64)
    generator = np.random.Generator(np.random.Philox(key=np.array([seed, MASK64 - 1], dtype=np.uint64)))
    rows = np.sort(generator.choice(padded, size=dim_out, replace=False))
    return signs[:, None] * scipy.linalg.hadamard(padded)[:dim_in, rows] / math.sqrt(dim_out)


@pytest.mark.parametrize("bits", [0, 1, 3, 5, 9])
@pytest.mark.parametrize("radix", [1, 2, 4, 7])
def test_fwht_equals_the_hadamard_matrix(bits, radix):
    x = torch.from_numpy(np.random.default_rng(bits).standard_normal((3, 1 << bits)))
    expected = x.numpy() @ scipy.linalg.hadamard(1 << bits)
    np.testing.assert_allclose(fwht(x.clone(), radix).numpy(), expected, rtol=1e-12, atol=1e-10)


def test_sylvester_is_scipys_hadamard_and_fwht_rejects_other_lengths():
    assert np.array_equal(sylvester(5, torch.float64).numpy(), scipy.linalg.hadamard(32))
    with pytest.raises(ValueError, match="not a power of two"):
        fwht(torch.zeros(2, 12))


@pytest.mark.parametrize("dim_in,dim_out", [(5, 3), (5, 8), (16, 16), (16, 5), (37, 20), (37, 64)])
def test_fast_transform_equals_the_explicit_matrix(dim_in, dim_out):
    x = np.random.default_rng(dim_in).standard_normal((4, dim_in))
    projection = SRHTProjection(dim_in, dim_out, seed=13, dtype=torch.float64)
    assert projection.padded == next_power_of_two(dim_in) == {5: 8, 16: 16, 37: 64}[dim_in]
    matrix = explicit_matrix(dim_in, dim_out, 13)
    for rows in (x, x[:2] * -3.0, x):  # the reused work buffers carry nothing from one call to the next
        got = projection.project_rows(torch.from_numpy(rows)).numpy()
        np.testing.assert_allclose(got, rows @ matrix, rtol=1e-12, atol=1e-12)


def test_inner_products_are_preserved_in_expectation():
    """Averaged over seeds, <y(a), y(b)> approaches <a, b>; with every coordinate kept it is exact."""
    rng = np.random.default_rng(4)
    a, b = (torch.from_numpy(rng.standard_normal(37)) for _ in range(2))
    full = SRHTProjection(37, 64, seed=0, dtype=torch.float64).project_rows(torch.stack([a, b]))
    # all 64 coordinates: y = H (s x) / 8 and H^T H = 64 I, so inner products are exact
    assert float(full[0] @ full[1]) == pytest.approx(float(a @ b), abs=1e-10)
    estimates = [float(y[0] @ y[1]) for y in (SRHTProjection(37, 8, seed=s, dtype=torch.float64)
                                              .project_rows(torch.stack([a, b])) for s in range(400))]
    spread = np.std(estimates) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates) - float(a @ b)) < 4 * spread


def test_projected_cosine_is_within_four_over_sqrt_d_of_the_exact_cosine():
    rng = np.random.default_rng(2)
    d, dim = 1024, 3000
    u = rng.standard_normal(dim)
    pairs = [(u, u + rng.standard_normal(dim) * s) for s in (0.3, 1.0, 3.0)] + [(u, rng.standard_normal(dim))]
    pairs.append((np.abs(u), np.abs(rng.standard_normal(dim))))  # positive vectors: cosine far from 0
    for seed in (0, 1, 2):
        projection = SRHTProjection(dim, d, seed=seed)
        for a, b in pairs:
            exact = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
            pa, pb = normalise_rows(projection.project_rows(torch.from_numpy(np.stack([a, b])).float())).double()
            assert abs(float(pa @ pb) - exact) < 4 / math.sqrt(d)


def test_same_seed_same_features_on_both_sides_and_any_batching():
    rng = np.random.default_rng(1)
    train, target = (torch.from_numpy(rng.standard_normal((n, 700))).float() for n in (6, 3))
    pool_side, target_side = SRHTProjection(700, 64, seed=9), SRHTProjection(700, 64, seed=9)
    all_at_once = pool_side.project_rows(torch.cat([train, target]))
    separately = torch.cat([pool_side.project_rows(train[:2]), pool_side.project_rows(train[2:]),
                            target_side.project_rows(target)])
    torch.testing.assert_close(separately, all_at_once, rtol=1e-6, atol=1e-5)
    assert torch.equal(target_side.project_rows(target), pool_side.project_rows(target))
    other = SRHTProjection(700, 64, seed=10)
    assert not torch.equal(other.signs, pool_side.signs) and not torch.equal(other.rows, pool_side.rows)
    assert not torch.allclose(other.project_rows(train), pool_side.project_rows(train))


def test_signs_are_a_prefix_of_one_stream():
    # a longer gradient keeps the shorter one's signs: the stream does not depend on dim_in
    assert torch.equal(SRHTProjection.sign_vector(3, 1000)[:100], SRHTProjection.sign_vector(3, 100))


def test_proj_dim_above_the_padded_length_is_a_clear_error():
    with pytest.raises(ValueError, match=r"selector.proj_dim=40: .* 32 of the zero-padded gradient \(length 17\)"):
        SRHTProjection(17, 40, seed=0)
    with pytest.raises(ValueError, match=r"expects \(n, 17\)"):
        SRHTProjection(17, 8, seed=0).project_rows(torch.zeros(2, 16))
