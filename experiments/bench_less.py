"""Benchmark LESS's feature stage: seconds per 100 Alpaca examples for per-example gradients and the two projections.

    python experiments/bench_less.py [--model smollm2|tiny] [--n 100] [--targets 20] [--proj-dim 8192]
                                     [--batch-size 4] [--n-check 3] [--threads N] [--dtype float32]

On the first ``--n`` examples of the offline Alpaca copy (``<$DELIFT_SHARED_DATASETS or ../shared/datasets>/
alpaca/train.jsonl``, rows that fail the formatter skipped) as the pool and the next ``--targets`` as the
target set, with the run's model config (``model=smollm2_135m``: SmolLM2-135M-Instruct, bf16) wrapped
in LESS's default LoRA (r=8, alpha=32, all linear layers) whose weights are set to seeded random values
(a warm-up's result would do; B = 0 would make every A gradient zero), it times for ONE checkpoint (a LESS
selection does this once per epoch, for pool and targets):

- gradients: the fast path (one backward per batch of ``--batch-size``, exact per-example gradients from
  hooks), the Adam feature with seeded random moments for the pool (the plain gradient for the targets),
  each batch written to the block-column scratch file;
- projection=rademacher: pool and targets (one chunk) projected block by block to ``--proj-dim`` with the
  seeded Rademacher matrix, read back from the scratch file, as LESS does;
- projection=srht: each batch projected as it comes with the subsampled randomized Hadamard transform
  (same ``--proj-dim``, same gradients), as LESS does.

LESS's score of each pool example (the cosine of its feature with the targets' mean normalised feature) is
computed from each projection (``--seeds`` seeds of each; timings are seed 0's) and from the exact
full-dimension cosines; it prints their Spearman correlations with the exact scores and between seeds of
one kind (the agreement two independent projections can reach on this pool at this ``--proj-dim``), seconds and seconds per 100 examples for each stage, the peak RSS after each stage
(ru_maxrss), the LoRA parameter count, and the agreement of the fast path with one backward per example
on the first ``--n-check`` examples, in the model's dtype and (a separate float32 load) in float32.
Its last line: ``projection speedup: <rademacher s / srht s>x spearman: <rademacher vs srht scores>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def lora_model(spec, dtype):
    """The default LESS LoRA on ``spec``, every LoRA weight a seeded random value (std 0.02)."""
    import torch

    from delift.selection.less import LESSSelector
    from delift.selection.less.gradients import lora_parameters
    from delift.selection.less.warmup import build_lora_model

    settings = LESSSelector().warmup_settings()
    model = build_lora_model(spec, settings, seed=0).eval()
    if dtype is not None:
        model = model.to(dtype)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in lora_parameters(model):
            p.copy_((torch.randn(p.shape, generator=generator) * 0.02).to(p.dtype))
    return model


def agreement(model, items, pad_id) -> tuple[float, float]:
    """(max |fast - reference|, that over max |reference|) on ``items`` batched together."""
    from delift.selection.less.gradients import fast_gradients, reference_gradients

    fast = fast_gradients(model, items, pad_id)
    reference = reference_gradients(model, items, pad_id)
    error = float((fast - reference).abs().max())
    return error, error / max(float(reference.abs().max()), 1e-30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", choices=("smollm2", "tiny"))
    parser.add_argument("--n", type=int, default=100, help="pool examples")
    parser.add_argument("--targets", type=int, default=20, help="target examples (the next Alpaca rows)")
    parser.add_argument("--proj-dim", type=int, default=8192)
    parser.add_argument("--proj-block", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--n-check", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2,
                        help="projection seeds 0..S-1 of each kind: seed 1 on gives the seed-to-seed agreement "
                             "that bounds the cross-projection Spearman (each extra rademacher seed costs a projection)")
    parser.add_argument("--max-length", type=int, default=0,
                        help="tokens per example (0: 1024; 2048 for the byte-level tiny model)")
    parser.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                        help="base model dtype (default: the model config's; use float32 on a CPU without "
                             "AVX512-BF16/AMX, where bf16 matmuls are emulated and ~100x slower)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    shared = Path(os.environ.get("DELIFT_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--data", default=str(shared / "alpaca" / "train.jsonl"))
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} does not exist: point --data at an Alpaca JSONL file")

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from delift.config.loader import compose_config
    from delift.data.loading import load_examples
    from delift.data.prompts import PromptTemplate
    from delift.models.loading import load_tokenizer
    from delift.run.pipeline import build_parts
    from delift.scoring.layout import training_items
    from delift.selection.less.gradients import adam_feature, lora_parameters, per_example_gradients
    from delift.selection.less.projection import BlockedScratch, RademacherProjection, normalise_rows
    from delift.selection.less.srht import SRHTProjection

    if args.threads:
        torch.set_num_threads(args.threads)
    model_name = {"smollm2": "smollm2_135m", "tiny": "tiny_llama"}[args.model]
    cfg = compose_config([f"model={model_name}"])
    spec = build_parts(cfg).scoring_spec
    if args.dtype:
        spec = dataclasses.replace(spec, dtype=args.dtype)
    total = args.n + args.targets
    examples = load_examples({"name": "alpaca", "format": "alpaca", "local_path": args.data, "on_bad_row": "skip",
                              "max_rows": total * 2})[:total]
    if len(examples) < total or args.n < 2 or args.targets < 1:
        sys.exit(f"need --n >= 2 pool and --targets >= 1 target examples; {args.data} has {len(examples)} usable")
    tokenizer = load_tokenizer(spec)
    max_length = args.max_length or (2048 if args.model == "tiny" else 1024)
    items = training_items(examples, tokenizer, PromptTemplate(), max_length)
    pad = int(tokenizer.pad_token_id)
    tokens = [len(it.context) + len(it.scored) for it in items]
    print(f"model {spec.name} ({spec.resolved_dtype}), {torch.get_num_threads()} threads; {args.n} pool + "
          f"{args.targets} target Alpaca examples, {np.mean(tokens):.0f} tokens on average (max {max(tokens)}); "
          f"batch {args.batch_size}; proj_dim {args.proj_dim}, rademacher block {args.proj_block}")
    rss = {"start": peak_rss_mb()}

    model = lora_model(spec, None)
    n_params = sum(p.numel() for _, p in lora_parameters(model))
    rss["model loaded"] = peak_rss_mb()
    generator = torch.Generator().manual_seed(1)
    m = torch.randn(n_params, generator=generator) * 1e-4
    v = torch.rand(n_params, generator=generator) * 1e-8

    seeds = range(max(args.seeds, 1))
    srhts = [SRHTProjection(n_params, args.proj_dim, seed=seed) for seed in seeds]
    srht_rows = [torch.empty(total, args.proj_dim) for _ in seeds]
    target_sum = torch.zeros(n_params, dtype=torch.float64)  # exact: the targets' normalised gradients, summed
    exact = np.empty(args.n)
    stored: list[int] = []  # item index of each scratch row
    gradient_s = srht_s = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-less-") as scratch_dir:
        scratch = BlockedScratch(Path(scratch_dir) / "grads.bin", total, n_params, args.proj_block)
        for side, indices in (("target", range(args.n, total)), ("pool", range(args.n))):
            order = sorted(indices, key=lambda i: -tokens[i])
            for first in range(0, len(order), args.batch_size):
                positions = order[first:first + args.batch_size]
                start = time.perf_counter()
                rows = per_example_gradients(model, [items[i] for i in positions], pad, "fast")
                rows = (adam_feature(rows, m, v) if side == "pool" else rows).float()
                scratch.write_rows(len(stored), rows.numpy())
                gradient_s += time.perf_counter() - start
                stored += positions
                for seed, srht in zip(seeds, srhts):
                    start = time.perf_counter()
                    srht_rows[seed][positions] = normalise_rows(srht.project_rows(rows))
                    if seed == 0:
                        srht_s += time.perf_counter() - start
                full = normalise_rows(rows.double())
                if side == "target":
                    target_sum += full.sum(0)
                else:
                    exact[positions] = (full @ (target_sum / args.targets)).numpy()
        rss["gradients + srht"] = peak_rss_mb()
        rademacher_rows = []
        for seed in seeds:
            projection = RademacherProjection(n_params, args.proj_dim, seed=seed, block_rows=args.proj_block)
            start = time.perf_counter()
            out = projection.project(lambda a, b: torch.from_numpy(scratch.read_cols(a, b)), total)
            rademacher_rows.append(torch.empty_like(out))
            rademacher_rows[-1][stored] = normalise_rows(out)
            if seed == 0:
                rademacher_s = time.perf_counter() - start
        rss["rademacher"] = peak_rss_mb()
        scratch.close()

    def less_scores(features: torch.Tensor) -> np.ndarray:
        return (features[:args.n].double() @ features[args.n:].double().mean(0)).numpy()

    scores = {f"{name} seed {seed}": less_scores(rows[seed]) for name, rows in (("rademacher", rademacher_rows),
                                                                               ("srht", srht_rows)) for seed in seeds}
    check = [items[i] for i in range(min(args.n_check, len(items)))]
    in_dtype = agreement(model, check, pad)
    del model
    in_fp32 = agreement(lora_model(spec, torch.float32), check, pad) if spec.resolved_dtype != "float32" else in_dtype

    per100 = 100 / total
    print(f"LoRA parameters: {n_params:,} (gradient row {n_params * 4 / 2**20:.1f} MiB in fp32; srht pads to "
          f"{srhts[0].padded:,})")
    print(f"gradients (fast path + Adam feature + scratch write), {total} examples: {gradient_s:.1f} s, "
          f"{gradient_s * per100:.1f} s per 100 examples, {total / gradient_s:.2f} ex/s")
    for name, seconds, how in (("rademacher", rademacher_s, f"{projection.n_blocks} blocks, one chunk"),
                               ("srht", srht_s, f"batches of {args.batch_size}")):
        print(f"projection={name} to {args.proj_dim} ({how}): {seconds:.2f} s, {seconds * per100:.2f} s per 100 "
              f"examples, {total / seconds:.2f} ex/s")
    print("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    line = f"fast vs reference on {len(check)} examples: float32 max abs {in_fp32[0]:.2e} (relative {in_fp32[1]:.2e})"
    if spec.resolved_dtype != "float32":
        line += f"; {spec.resolved_dtype} max abs {in_dtype[0]:.2e} (relative {in_dtype[1]:.2e})"
    print(line)
    rho = lambda a, b: spearmanr(a, b).statistic  # noqa: E731
    print(f"LESS scores of the {args.n} pool examples (exact: std {exact.std():.4f}), Spearman with the exact "
          "full-dimension cosines: " + ", ".join(f"{name} {rho(values, exact):.4f}" for name, values in scores.items()))
    for name in ("rademacher", "srht"):
        if len(seeds) > 1:
            print(f"seed to seed, {name}: " + ", ".join(
                f"0 vs {seed} {rho(scores[f'{name} seed 0'], scores[f'{name} seed {seed}']):.4f}" for seed in seeds[1:]))
    print(f"projection speedup: {rademacher_s / srht_s:.1f}x "
          f"spearman: {rho(scores['rademacher seed 0'], scores['srht seed 0']):.4f}")

if __name__ == "__main__":
    main()
