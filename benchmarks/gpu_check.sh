#!/usr/bin/env bash
# The "Benchmarks: speed and memory" table of docs/development.md on one GPU, offline, in a few minutes:
#   bash benchmarks/gpu_check.sh [JSON_PATH]
# Stable Diffusion v1.5's architecture with seeded random weights (nothing is downloaded), batch 8, 50 DDIM steps,
# an update every 10 steps; fixed / DATE / DATE --lean / DATE fast, in fp32 and fp16, each in its own process.
# Needs PyTorch, transformers and diffusers. On a machine without diffusers and without network, put the wheels in
# .whl/ first (here: pip download --no-deps -d .whl diffusers==0.42.1 importlib_metadata); they are installed to a
# temporary folder, nothing else is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import diffusers" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "error: diffusers is not installed and there are no wheels in .whl/" >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/date-gpu-check .whl/*.whl
  export PYTHONPATH=/tmp/date-gpu-check${PYTHONPATH:+:$PYTHONPATH}
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
python3 benchmarks/speed_memory.py --arch sd15 --device cuda --bs 8 --steps 50 --skip_freq 10 --dtypes fp32,fp16 \
  --json "${1:-runs/gpu_check.json}"
