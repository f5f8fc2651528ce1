#!/usr/bin/env bash
# Set up, then run the test suite offline (no hub, W&B off). Extra arguments go to pytest
# (e.g. -m "not slow" for the fast tier). DELIFT_SKIP_SETUP=1 skips the install step.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ "${DELIFT_SKIP_SETUP:-0}" == 1 ]] || bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled WANDB_SILENT=true
exec "${PYTHON:-python3}" -m pytest -q "$@"
