"""Logging, the installer's error type, running commands, version helpers."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = 'docs/install.md'
PIP_HINT = ('if pip could not reach the package index (offline, proxy), fix the '
            'network, point PIP_INDEX_URL at a mirror, or install from a bundle '
            '(bash tools/install.sh --offline DIR, made elsewhere with --download); '
            'see ' + DOCS)


def log(msg: str) -> None:
    print(f'[flsl_mm install] {msg}', flush=True)


class InstallError(RuntimeError):
    """A step failed; the message says what went wrong and what to do next."""


def version_tuple(version: str) -> tuple[int, ...]:
    """``'2.11.0+cu128'`` -> ``(2, 11, 0)``: the leading numeric release parts."""
    parts = []
    for piece in version.split('+')[0].split('.'):
        digits = ''
        for c in piece:
            if not c.isdigit():
                break
            digits += c
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def installed_version(dist: str) -> str | None:
    """Version of ``dist`` in *this* interpreter's environment (None: absent)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def canonical(name: str) -> str:
    """PEP 503 name: ``Pillow`` / ``opencv_python`` -> ``pillow`` / ``opencv-python``."""
    out = []
    for c in name.lower():
        out.append('-' if c in '._-' else c)
    text = ''.join(out)
    while '--' in text:
        text = text.replace('--', '-')
    return text


def requirement_class():
    """``packaging``'s Requirement: the installed one, else pip's vendored copy."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def run(cmd: list[str], what: str, env: dict | None = None,
        logfile: Path | None = None, cwd: str | None = None,
        heartbeat_s: float = 60.0, hint: str = '', diagnose=None,
        quiet: bool = False) -> None:
    """Run ``cmd``; with ``logfile``, send its output there and print a progress
    line (elapsed minutes, last log line) every ``heartbeat_s`` seconds. On
    failure, ``diagnose(log text)`` names the cause(s) found in the log."""
    if not quiet:
        shown = cmd if len(cmd) < 24 else cmd[:20] + [f'... ({len(cmd) - 20} more)']
        log('$ ' + ' '.join(shown))
    if logfile is None:
        proc = subprocess.run(cmd, env=env, cwd=cwd)
    else:
        start = time.time()
        with open(logfile, 'w') as fh:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh,
                                    stderr=subprocess.STDOUT)
            while True:
                try:
                    proc.wait(timeout=heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    lines = logfile.read_text(errors='replace').splitlines()
                    last = lines[-1].strip()[:100] if lines else ''
                    log(f'  ... {what}: {(time.time() - start) / 60:.0f} min, '
                        f'{last}')
    if proc.returncode != 0:
        tail, causes = '', []
        if logfile is not None and logfile.exists():
            text = logfile.read_text(errors='replace')
            causes = diagnose(text) if diagnose is not None else []
            tail = '\n'.join(text.splitlines()[-40:])
            tail = f'\n--- last lines of {logfile} ---\n{tail}\n---'
        cause = ''.join(f'\nCause (from the log): {c}' for c in causes)
        raise InstallError(f'{what} failed (exit {proc.returncode}){tail}{cause}'
                           + (f'\nNext: {hint}' if hint else ''))


def python_output(code: str, python: str = sys.executable, env: dict | None = None,
                  timeout: float = 300) -> tuple[int, str, str]:
    """Run ``code`` in ``python`` (from a neutral folder, so that the checkout is
    not on ``sys.path``); returns (exit code, stdout, stderr)."""
    proc = subprocess.run([python, '-c', code], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def last_line(text: str, default: str = '?') -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else default
