#!/usr/bin/env bash
# One-command set-up of flsl_mm and its OpenMMLab stack in the active Python
# environment: nothing compiled, the environment's own torch (>= 2.11) kept.
# Idempotent: a second run skips everything already in place. Options
# (--download DIR, --offline DIR, --mmcv compiled, --check, --dry-run):
# `bash tools/install.sh --help`, docs/install.md.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/install.py" "$@"
