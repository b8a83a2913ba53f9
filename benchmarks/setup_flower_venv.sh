#!/usr/bin/env bash
# Create .venv-flower for the Flower comparison benchmark (benchmarks/fl_flower.py).
# Flower and Ray never go into the project's .venv. torch is shared with .venv through a
# .pth file, so pip does not pull a second (CUDA) torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')/bin/python3
if [ ! -x .venv-flower/bin/python ]; then
    "$BASE" -m venv .venv-flower
fi
SITE=$(.venv-flower/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
MAIN_SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$MAIN_SITE" > "$SITE/zz_fedhub_main_venv.pth"
.venv-flower/bin/pip install -q --upgrade pip
.venv-flower/bin/pip install -q "flwr[simulation]==${FLWR_VERSION:-1.41.0}"
.venv-flower/bin/python -c 'import flwr, ray, torch; print("flwr", flwr.__version__, "ray", ray.__version__, "torch", torch.__version__)'
