#!/usr/bin/env bash
# Set up, then run the quickstart (synthetic data, SmolLM2-135M, DELIFT, QLoRA, ROUGE + BGE).
# Extra arguments are Hydra overrides, e.g.: bash scripts/quickstart.sh -m selector=delift,random
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
exec "${PYTHON:-python3}" -m delift "$@"
