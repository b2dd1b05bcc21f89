#!/usr/bin/env bash
# One-command set-up of flsl_mm and its OpenMMLab stack in the active Python
# environment. Idempotent: a second run skips everything already in place.
# See tools/install.py for what each step does (and why mmcv is built from source).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/install.py" "$@"
