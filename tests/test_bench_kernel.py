"""experiments/bench_kernel.py's choices, without timing: the speed run's dtype, the matmul peaks it is compared
with, the CPU features it reports (issue 24.11)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bench_kernel.py"
spec = importlib.util.spec_from_file_location("bench_kernel", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

AVX2_ONLY = "flags\t\t: fpu sse2 avx f16c avx2 fma bmi2\n"  # the AMD EPYC of issue 24.11: bf16 emulated
AVX512_BF16 = "flags\t\t: fpu avx2 avx512f avx512dq avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"


@pytest.mark.parametrize("cpuinfo,features,dtype", [
    (AVX2_ONLY, ["avx2"], "float32"),
    (AVX512_BF16, ["avx2", "avx512f", "avx512_bf16"], "bfloat16"),
    (SAPPHIRE_RAPIDS, ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"], "bfloat16"),
    ("", [], "float32"),
])
def test_auto_dtype_follows_the_cpu_features(cpuinfo, features, dtype):
    found, capability = bench.cpu_features(cpuinfo)
    assert found == features and isinstance(capability, str) and capability
    assert bench.run_dtype("auto", "cpu", found) == dtype
    assert bench.run_dtype("float32", "cpu", found) == "float32"  # an explicit dtype is kept
    assert bench.run_dtype("bfloat16", "cpu", found) == "bfloat16"


def test_auto_dtype_on_a_gpu_is_the_model_dtype_auto_rule(monkeypatch):
    monkeypatch.setattr(bench, "resolve_dtype", lambda name: {"auto": "bfloat16"}[name])
    assert bench.run_dtype("auto", "cuda", []) == "bfloat16"


def test_the_peak_is_measured_in_the_runs_dtype_and_the_other_for_reference():
    assert bench.peak_dtypes("float32") == ("float32", "bfloat16")
    assert bench.peak_dtypes("bfloat16") == ("bfloat16", "float32")
    assert bench.peak_dtypes("float16") == ("float16", "float32")


@pytest.mark.parametrize("gflops,size", [(0.1, 256), (40.0, 2048), (2.0, 1024)])
def test_matmul_peak_grows_the_product_only_while_it_is_quick(monkeypatch, gflops, size):
    """Fake timings of gflops GFLOP/s: the size doubles from 256 while one product takes under 0.25 s."""
    monkeypatch.setattr(bench, "_timed", lambda product, device: 2 * product.args[0].shape[0] ** 3 / gflops / 1e9)
    measured, used = bench.matmul_peak("bfloat16", "cpu")
    assert used == size and measured == pytest.approx(gflops)
