#!/usr/bin/env bash
# The GPU path in one go, on a CUDA machine with the package installed over a CUDA torch
# (DELIFT_TORCH=keep bash scripts/setup.sh). One summary line per check; stops at the first failure (exit 1).
#   1. cuda      torch sees a GPU (name, bf16 support)
#   2. smoke     experiment=smoke on CUDA with evaluation=[icl,qlora] (tiny model: plumbing only)
#   3. bench     experiments/bench_kernel.py --device cuda on SmolLM2-135M (engine vs per-pair, pairs/s)
#   4. qlora     one 4-bit QLoRA optimiser step of SmolLM2-135M (bitsandbytes on CUDA)
#   5. plan      delift-plan's kernel pairs/sequences/tokens for a 1,000-example Alpaca pool with SmolLM2
#                against the engine's own counts when that kernel is computed
# Usage: bash experiments/gpu_check.sh [OUT_DIR]   (default: gpu_check_out/; the plan check's pool size can be
# lowered with GPU_CHECK_POOL=200). Writes each check's log under OUT_DIR; nothing here needs the hub if the
# shared datasets are at ../shared/datasets (or DELIFT_SHARED_DATASETS).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check_out}"
POOL="${GPU_CHECK_POOL:-1000}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export DELIFT_CACHE_DIR="${DELIFT_CACHE_DIR:-$PWD/$OUT/cache}" WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

check() {  # check NAME COMMAND...: run it, log to OUT/NAME.log, print one line, stop on failure
  local name=$1; shift
  local start=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then
    echo "$name: ok in $((SECONDS - start)) s: $(tail -n 1 "$OUT/$name.log")"
  else
    echo "$name: FAILED after $((SECONDS - start)) s (log: $OUT/$name.log); last lines:"
    tail -n 15 "$OUT/$name.log" | sed 's/^/    /'
    exit 1
  fi
}

check cuda "$PY" -c "
import torch
assert torch.cuda.is_available(), 'torch sees no CUDA device (a CPU build? install a CUDA torch, then DELIFT_TORCH=keep)'
print(torch.cuda.get_device_name(0), 'bf16' if torch.cuda.is_bf16_supported() else 'no bf16', 'torch', torch.__version__)"

check smoke "$PY" -c "
import json, subprocess, sys
out = '$OUT/smoke_run'
subprocess.run([sys.executable, '-m', 'delift', 'experiment=smoke', 'evaluation=[icl,qlora]', 'progress=false',
                f'hydra.run.dir={out}'], check=True)
m = json.load(open(f'{out}/metrics.json'))
assert m['qlora/train_steps'] >= 1, m
print(f\"qlora/train_steps={m['qlora/train_steps']} icl/rouge1={m['icl/rouge1']:.3f} (tiny model: plumbing)\")"

check bench "$PY" experiments/bench_kernel.py --device cuda --model smollm2 --n 32 --n-exact 8 --rss-sizes ''

check qlora "$PY" -c "
import json, subprocess, sys
out = '$OUT/qlora_run'
subprocess.run([sys.executable, '-m', 'delift', 'model=smollm2_135m', 'selector=random', 'evaluation=qlora',
                'evaluation.qlora.train.max_steps=1', 'evaluation.qlora.generation.max_new_tokens=8',
                'data.synthetic.n=40', 'data.sizes.train=16', 'data.sizes.test=4', 'progress=false',
                f'hydra.run.dir={out}'], check=True)
m = json.load(open(f'{out}/metrics.json'))
assert m['qlora/train_steps'] == 1, m
print(f\"one 4-bit step: train_loss={m['qlora/train_loss']:.4f}\")"

check plan "$PY" experiments/plan_vs_run.py --pool "$POOL" --out "$OUT/plan_run"

echo "gpu_check: all checks passed (logs in $OUT)"
