"""The model-family matrix: every tiny family through the kernel engine and the smoke experiment, as one table.

    python experiments/family_matrix.py [--families llama3,qwen2] [--cache-dir DIR]

Per family (``conf/model/tiny_<family>.yaml``):
1. engine vs naive: the family's tiny model, fitted for a few Adam steps to one-shot texts of the smoke pool
   (a random model scores every token ~1/258 and makes the comparison vacuous), scores 8 targets x 8 candidates
   of that pool with the kernel engine (prefix reuse, per-sequence zero-shot) and with one full forward of
   the model per sequence; the table gives the largest |d| difference over zero- and one-shot values and
   the spread (std) of UF = d_zero - d_one, which says the shown example matters;
2. the smoke runs of :data:`RUNS` (``experiment=smoke model=tiny_<family>``), one training step per
   fine-tuning protocol; a run counts when every protocol reports its metrics.

The slow tests (tests/test_family_matrix.py) run the same :data:`RUNS`. bf16 is emulated on CPUs without
native bf16 (hundreds of times slower than fp32); the tiny models keep even bf16 runs to seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "disabled")

FAMILIES = ("llama", "llama3", "qwen2", "phi3", "mistral", "gemma2")  # delift.models.config.TINY_FAMILIES
FIRST = ("random", "initial", "full", "delift", "delift_se", "nuggets", "ifd", "selectit", "lobass", "less")
# every conf/selector option (a new selector joins the matrix by its YAML), the long-standing ones first
SELECTORS = FIRST + tuple(sorted({p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "selector")
                                  .glob("*.yaml")} - set(FIRST)))
# (model.dtype, evaluation protocols, selectors): every selector once in fp32 under [icl,lora]; QLoRA and bf16
# with the DELIFT kernel, and bf16 with one selector of each other scoring path (gradients, ratings, losses).
RUNS = tuple((dtype, ("icl", "lora", "qlora"), SELECTORS) for dtype in ("float32", "bfloat16"))  # the full matrix
FIT_STEPS = 60
SHORT = {"float32": "fp32", "bfloat16": "bf16"}


def smoke_overrides(family: str, selector: str, dtype: str, protocols: tuple[str, ...], cache_dir: Path) -> list[str]:
    """``experiment=smoke`` on ``tiny_<family>``: one training step and 4 new tokens per protocol."""
    overrides = ["experiment=smoke", f"model=tiny_{family}", f"model.dtype={dtype}", f"selector={selector}",
                 f"evaluation=[{','.join(protocols)}]", f"paths.cache_dir={cache_dir}", "progress=false"]
    for protocol in protocols:
        overrides.append(f"evaluation.{protocol}.generation.max_new_tokens=4")
        if protocol != "icl":
            overrides += [f"evaluation.{protocol}.train.max_steps=1", f"evaluation.{protocol}.train.max_length=512"]
    return overrides


def run_problems(metrics: dict, record: dict, family: str, dtype: str, protocols: tuple[str, ...]) -> list[str]:
    """What a finished smoke run lacks (empty when it ran every stage as configured)."""
    found = [f"no {p}/rouge1" for p in protocols if not 0.0 <= metrics.get(f"{p}/rouge1", -1.0) <= 1.0]
    found += [f"{p} trained {metrics.get(f'{p}/train_steps')} steps on {metrics.get(f'{p}/train_size')} examples"
              for p in protocols if p != "icl" and metrics.get(f"{p}/train_steps") != min(1, metrics[f"{p}/train_size"])]
    if record["model"]["dtype"] != dtype or record["model"]["tiny"].get("family", "llama") != family:
        found.append(f"run.json model is {record['model']}")
    return found


def naive_distance(model, ids: list[int], start: int) -> float:
    """d = sqrt(mean_t (1 - p_t)^2) over ids[start:], from the model's own forward on the one sequence."""
    import torch

    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    p = probs[torch.arange(start - 1, len(ids) - 1), torch.tensor(ids[start:])]
    return float(torch.sqrt(((1 - p) ** 2).mean()))


def engine_check(family: str, cache_dir: Path, n: int = 8) -> tuple[float, float]:
    """(max |engine - naive| over d_zero and d_one, std of the naive UF) on n x n smoke-pool pairs, in fp32."""
    import numpy as np

    from delift.config.loader import compose_config
    from delift.data.prompts import PromptTemplate
    from delift.kernel.engine import ScoringSetup, score_one_shot, score_zero_shot
    from delift.kernel.tokens import tokenize_examples
    from delift.models.loading import load_model, load_tokenizer
    from delift.models.tiny import fit_to_texts
    from delift.run.usecases import load_usecase_data

    cfg = compose_config(smoke_overrides(family, "random", "float32", ("icl",), cache_dir))
    pool = load_usecase_data(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets).pool[:n]
    template = PromptTemplate()
    tokenizer = load_tokenizer(cfg.model)
    texts = [template.render(a) + a.output + "\n\n" + template.render(b) + b.output for a in pool for b in pool][::3]
    model = fit_to_texts(load_model(cfg.model), tokenizer, texts, FIT_STEPS)
    tokens = tokenize_examples(pool, tokenizer, template, cfg.kernel)
    if max(len(c.shown) + len(t.query) + len(t.response) + 2 for t in tokens for c in tokens) > cfg.kernel.max_length:
        raise ValueError("a one-shot sequence exceeds kernel.max_length: the naive sequences would differ")
    setup = ScoringSetup(model, tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.kernel.eos_after_prompt,
                         cfg.kernel.max_length, tokens_per_batch=600, workers=1)
    zero, _ = score_zero_shot(setup, tokens)
    one, _ = score_one_shot(setup, tokens, tokens)
    eos = [tokenizer.eos_token_id]
    sep = eos if cfg.kernel.eos_after_prompt else []
    naive_zero = np.array([naive_distance(model, t.query + sep + t.response + eos, len(t.query) + len(sep))
                           for t in tokens])
    naive_one = np.array([[naive_distance(model, c.shown + t.query + sep + t.response + eos,
                                          len(c.shown) + len(t.query) + len(sep)) for c in tokens] for t in tokens])
    diff = max(np.abs(zero - naive_zero).max(), np.abs(one - naive_one).max())
    return float(diff), float(np.std(naive_zero[:, None] - naive_one))


def smoke_run(family: str, selector: str, dtype: str, protocols: tuple[str, ...], cache_dir: Path,
              output_dir: Path) -> list[str]:
    """Run one smoke experiment; the problems of its result (an exception's text when it failed)."""
    from delift.config.loader import compose_config
    from delift.run.pipeline import run_experiment

    try:
        metrics = run_experiment(compose_config(smoke_overrides(family, selector, dtype, protocols, cache_dir)),
                                 output_dir)
    except Exception as exc:  # the table reports it; the other runs go on
        return [f"{type(exc).__name__}: {str(exc)[:200]}"]
    record = json.loads((output_dir / "run.json").read_text())
    return run_problems(metrics, record, family, dtype, protocols)


def family_row(family: str, cache_dir: Path, runs_dir: Path, failures: list[str]) -> tuple[str, ...]:
    """One table row: the engine check, then every run of :data:`RUNS` (failures appended to ``failures``)."""
    clock = time.perf_counter()
    diff, spread = engine_check(family, cache_dir)
    ran: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for dtype, protocols, selectors in RUNS:
        for selector in selectors:
            problems = smoke_run(family, selector, dtype, protocols, cache_dir,
                                 runs_dir / f"{family}-{dtype}-{selector}-{'-'.join(protocols)}")
            if problems:
                failures.append(f"{family} {dtype} {selector} [{','.join(protocols)}]: {'; '.join(problems)}")
            else:
                ran.setdefault((dtype, protocols), []).append(selector)
    row = [family, f"{diff:.1e}", f"{spread:.1e}"]
    for dtype in SHORT:
        done = [s for (d, _), selectors in ran.items() if d == dtype for s in selectors]
        planned = [s for d, _, selectors in RUNS if d == dtype for s in selectors]
        protocols = sorted({p for (d, ps) in ran if d == dtype for p in ps}, key="icl lora qlora".find)
        named = f" ({','.join(done)})" if len(planned) < len(SELECTORS) else ""
        row += [f"{len(done)}/{len(planned)}{named}", ",".join(protocols)]
    return (*row, f"{time.perf_counter() - clock:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--cache-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    rows, failures, started = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="family-matrix-") as scratch:
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path(scratch) / "cache"
        for family in args.families.split(","):
            rows.append(family_row(family, cache_dir, Path(scratch) / "runs", failures))
            print(f"[{family} done in {rows[-1][-1]} s]", flush=True)
    for dtype, protocols, selectors in RUNS:
        print(f"plan: {SHORT[dtype]} [{','.join(protocols)}]: {','.join(selectors)}")
    header = ("family", "engine max|diff| fp32", "std UF", "fp32 selectors", "fp32 protocols", "bf16 selectors",
              "bf16 protocols", "s")
    widths = [max(len(str(r[k])) for r in [header, *rows]) for k in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    runs = sum(len(s) for _, _, s in RUNS) * len(rows)
    print(f"{runs - len(failures)} of {runs} smoke runs ran; {time.perf_counter() - started:.0f} s in all")
    for failure in failures:
        print("FAILED", failure)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
