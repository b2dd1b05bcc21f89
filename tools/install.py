#!/usr/bin/env python3
"""Set up everything flsl_mm needs in the *active* Python environment.

Run it as ``bash tools/install.sh`` (a thin wrapper) or ``python tools/install.py``
with the interpreter of the environment to install into (a ``python3 -m venv``, with
or without ``--system-site-packages``, a conda env, pyenv). Nothing is compiled by
default; the environment's own torch (>= 2.11) is kept. The steps, options and
modules: ``tools/installer/`` (``cli.py``), ``docs/install.md``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from installer.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
