"""Benchmark: seconds per 100 examples for each model-scored selector, and cache hits on a second run.

    python experiments/bench_selectors.py [--model smollm2|tiny] [--n 100] [--selectors selectit,ifd,lobass,nuggets]

Each selector scores the first ``--n`` examples of the offline Alpaca copy (../shared/datasets) as
its pool with the run's model (SmolLM2-135M-Instruct, bf16, by default) in a fresh cache folder,
then scores them again with the same cache. It prints, per selector: wall seconds of the first run,
seconds per 100 examples, and the second run's seconds and cache hits (examples or pairs not
recomputed). LoBaSS's first run includes fine-tuning its reference LoRA on the pool (the run's
default LoRA settings: 3 epochs, lr 2e-4); the second run reuses the cached adapter.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]
SELECTORS = ("selectit", "ifd", "lobass", "nuggets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", choices=("smollm2", "tiny"))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--selectors", default=",".join(SELECTORS))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "alpaca" / "train.jsonl"))
    args = parser.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} does not exist: point --data at an Alpaca JSONL file")

    from dataclasses import asdict

    from delift.config.loader import compose_config
    from delift.data.loading import load_examples
    from delift.data.prompts import PromptTemplate
    from delift.kernel.cache import KernelCache
    from delift.kernel.front import Kernels
    from delift.kernel.provider import KernelProvider
    from delift.run.pipeline import build, build_parts, reference_training
    from delift.selection.base import SelectionContext
    from delift.training.adapter_cache import trained_adapter

    model = {"smollm2": "smollm2_135m", "tiny": "tiny_llama"}[args.model]
    pool = load_examples({"name": "alpaca", "format": "alpaca", "local_path": args.data, "on_bad_row": "skip",
                          "max_rows": args.n * 2})[: args.n]
    with tempfile.TemporaryDirectory(prefix="bench-selectors-") as cache_dir:
        print(f"pool: first {len(pool)} Alpaca examples; model {model}; cache {cache_dir}")
        for name in args.selectors.split(","):
            cfg = compose_config([f"model={model}", f"selector={name}", f"paths.cache_dir={cache_dir}",
                                  "progress=false"])
            template = PromptTemplate(**asdict(cfg.prompt))
            parts = build_parts(cfg)
            spec = parts.scoring_spec
            line = []
            for attempt in ("first", "second"):
                kernels = Kernels(KernelProvider(spec, template, cfg.kernel, KernelCache(Path(cache_dir) / "kernels"),
                                                 progress=False))
                ctx = SelectionContext(
                    pool=pool, seed=0, kernels=kernels, model_spec=spec, template=template, progress=False,
                    cache_dir=Path(cache_dir), output_dir=Path(cache_dir) / "out",
                    train_adapter=partial(trained_adapter, spec, template=template, cfg=reference_training(parts),
                                          seed=0, cache_dir=cache_dir, output_dir=Path(cache_dir) / "out" / "reference",
                                          progress=False))
                selector = build(cfg.selector)
                start = time.perf_counter()
                selection = selector.select(ctx, max(1, len(pool) * 3 // 10))
                seconds = time.perf_counter() - start
                info = selection.info
                hits = info.get("cache_hits", sum(m.get("cache_hits", 0) for m in info.get("models", [])))
                scored = info.get("scored", sum(m.get("scored", 0) for m in info.get("models", [])))
                reuse = (f"kernel from the cache: {info['kernel_cached']}" if "kernel_cached" in info
                         else f"scored {scored}, cache hits {hits}")
                line.append(f"{attempt} {seconds:.1f} s ({reuse})")
                if attempt == "first":
                    line.append(f"{seconds * 100 / len(pool):.1f} s per 100 examples")
                kernels.release()
            print(f"{name}: " + "; ".join(line))


if __name__ == "__main__":
    main()
