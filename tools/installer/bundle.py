"""Offline bundles: ``--download DIR`` writes every wheel a target needs plus a
manifest; ``--offline DIR`` checks and installs them without any package index.

The manifest (``flsl_mm_bundle.json``) lists each wheel's name, version, file,
sha256, size and role (``torch``: only there for the pinned torch pair), the
target (Python, platforms, torch included or not) and the total size.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from . import pins
from .common import PIP_HINT, InstallError, canonical, log, run
from .resolve import Pin, Resolution, Target

MANIFEST = 'flsl_mm_bundle.json'
FORMAT = 1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as fh:
        for block in iter(lambda: fh.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def wheel_name(pin: Pin) -> str:
    if not pin.url:
        raise InstallError(f'pip gave no download address for {pin.spec}')
    return unquote(Path(urlparse(pin.url).path).name)


@dataclass
class Entry:
    name: str
    version: str
    file: str
    sha256: str
    size: int
    role: str


def download(resolution: Resolution, target: Target, out: Path,
             with_torch: bool) -> dict:
    """Fetch every wheel of ``resolution`` into ``out``, check it against the
    sha256 pip's index published, and write the manifest (last, so a folder
    without one is an unfinished download)."""
    out.mkdir(parents=True, exist_ok=True)
    stale = out / MANIFEST
    stale.unlink(missing_ok=True)
    non_wheels = [p.spec for p in resolution.pins if p.url and not
                  urlparse(p.url).path.endswith('.whl')]
    if non_wheels:
        raise InstallError('these have no wheel for the target, only source: '
                           + ', '.join(non_wheels))
    missing = [p for p in resolution.pins if not (out / wheel_name(p)).is_file()]
    if missing:
        log(f'downloading {len(missing)} wheel(s) into {out}')
        run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--quiet',
             '--disable-pip-version-check', *target.pip_args(), '-d', str(out),
             *[p.url for p in missing]], 'downloading the bundle', hint=PIP_HINT,
            quiet=True)
    entries = []
    for pin in resolution.pins:
        path = out / wheel_name(pin)
        if not path.is_file():
            raise InstallError(f'{path} was not downloaded')
        digest = sha256_of(path)
        if pin.sha256 and digest != pin.sha256:
            path.unlink()
            raise InstallError(f'{path.name}: sha256 {digest} is not the index\'s '
                               f'{pin.sha256}; deleted, run the download again')
        entries.append(Entry(pin.name, pin.version, path.name, digest,
                             path.stat().st_size, pin.role))
    manifest = dict(
        format=FORMAT, made_by='flsl_mm bash tools/install.sh --download',
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        target=dict(python=target.python_tag,
                    platforms=list(target.platforms) or (['this machine'] if not
                                                         target.cross else []),
                    torch='included' if with_torch else 'excluded'),
        pins=dict(pins.TOP_PINS, torch=pins.TORCH_VERSION if with_torch else None),
        packages=[asdict(e) for e in entries],
        total_size=sum(e.size for e in entries))
    tmp = out / (MANIFEST + '.partial')
    tmp.write_text(json.dumps(manifest, indent=1) + '\n')
    tmp.replace(out / MANIFEST)
    return manifest


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InstallError(f'{folder}: no such folder (the bundle made by bash '
                           'tools/install.sh --download DIR)')
    if not path.is_file():
        raise InstallError(f'{folder} has no {MANIFEST}: not a bundle, or its '
                           'download did not finish; run --download again')
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise InstallError(f'{path} is not valid JSON ({exc})') from None
    if manifest.get('format') != FORMAT:
        raise InstallError(f'{path}: bundle format {manifest.get("format")!r}, this '
                           f'installer reads format {FORMAT}')
    return manifest


def check_bundle(folder: Path, manifest: dict) -> list[Entry]:
    """Every listed wheel present with its sha256, made for this Python."""
    want = f'{sys.version_info.major}.{sys.version_info.minor}'
    have = manifest['target']['python']
    if have != want:
        raise InstallError(
            f'{folder} was made for Python {have}, this is Python {want} '
            f'({sys.executable}): make it with --download DIR --python {want}')
    entries = []
    for raw in manifest['packages']:
        entry = Entry(**raw)
        path = folder / entry.file
        if not path.is_file():
            raise InstallError(f'{path} is listed in the bundle\'s manifest but '
                               'missing: copy the whole folder')
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise InstallError(f'{path}: sha256 {digest} is not the manifest\'s '
                               f'{entry.sha256} (truncated or altered copy)')
        entries.append(entry)
    return entries


def offline_selection(entries: list[Entry], keep_torch: bool,
                      protected: dict[str, str], mmcv_keep: bool,
                      installed) -> tuple[list[Entry], list[str]]:
    """The wheels of the bundle to install here, and why others are not:
    the torch pair (and what only it needs) when the environment's torch is
    kept; protected packages already installed (any OpenCV when one is); an installed mmcv that is kept;
    what is installed at the same version."""
    chosen, skipped = [], []
    opencv = [f'{d} {v}' for d, v in protected.items() if d in pins.OPENCV_DISTS]
    for entry in entries:
        key = canonical(entry.name)
        if entry.role == 'torch' and keep_torch:
            skipped.append(f'{entry.name} (the environment\'s torch is kept)')
        elif key in protected:
            skipped.append(f'{entry.name} (installed {protected[key]} is kept)')
        elif key in pins.OPENCV_DISTS and opencv:
            skipped.append(f'{entry.name} (installed {", ".join(opencv)} is kept)')
        elif key == 'mmcv-lite' and mmcv_keep:
            skipped.append(f'{entry.name} (the installed mmcv is kept)')
        elif installed(entry.name) == entry.version:
            continue
        else:
            chosen.append(entry)
    return chosen, skipped


def summary(manifest: dict) -> str:
    n = len(manifest['packages'])
    size = manifest['total_size'] / 2 ** 20
    torch_mb = sum(p['size'] for p in manifest['packages'] if p['role'] == 'torch') \
        / 2 ** 20
    t = manifest['target']
    return (f'{n} wheels, {size:.1f} MiB (torch and its libraries {torch_mb:.1f} MiB) '
            f'for Python {t["python"]}, torch {t["torch"]}')
