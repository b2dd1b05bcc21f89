"""Checkpoint files that a kill cannot leave half-written, and finding the newest
good one to resume from (docs/pretraining.md, "Preemption and resume").

A checkpoint is written to ``<name>.tmp`` in its own folder, flushed, fsynced and
renamed over ``<name>`` (a rename is atomic on POSIX file systems), then the folder
is fsynced; ``last_checkpoint`` is replaced the same way, only after the file it
names is complete. A kill at any moment leaves either the old file or the new
one, plus at most a stale ``*.tmp`` that the next save removes.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import re
import zipfile


TMP_SUFFIX = '.tmp'
LAST_CHECKPOINT = 'last_checkpoint'


def fsync_dir(folder: str) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be
    opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp_path: str, path: str) -> None:
    """fsync the complete file ``tmp_path`` and rename it to ``path``."""
    with open(tmp_path, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
    fsync_dir(osp.dirname(osp.abspath(path)))


def write_text_atomic(path: str, text: str) -> None:
    """Replace ``path`` by a file holding ``text``, atomically."""
    tmp = path + TMP_SUFFIX
    with open(tmp, 'w') as f:
        f.write(text)
    commit_file(tmp, path)


def remove_stale_tmp(folder: str) -> list[str]:
    """Delete the ``*.pth.tmp`` / ``last_checkpoint.tmp`` files a killed save left
    in ``folder``; returns their names."""
    stale = glob.glob(osp.join(folder, '*.pth' + TMP_SUFFIX))
    stale += glob.glob(osp.join(folder, LAST_CHECKPOINT + TMP_SUFFIX))
    for path in stale:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    return [osp.basename(p) for p in stale]


def checkpoint_problem(path: str) -> str | None:
    """What is wrong with the checkpoint file ``path`` (None: it is complete and
    readable). Checks the zip container and every record's CRC (truncation,
    corruption), then loads it safely (weights only, memory-mapped, so the tensors
    are not read twice) and checks that it holds ``meta`` (with ``epoch`` and ``iter``) and a
    ``state_dict``."""
    if not osp.isfile(path):
        return 'file not found'
    size = osp.getsize(path)
    if size == 0:
        return 'empty file (0 bytes)'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            return f'corrupt: record {bad} fails its CRC check ({size} bytes)'
    except zipfile.BadZipFile as exc:
        return f'truncated or not a torch checkpoint ({size} bytes): {exc}'
    except (OSError, EOFError, ValueError) as exc:
        return f'unreadable ({size} bytes): {exc}'
    from flsl_mm.checkpoints import UnsafeCheckpointError, load_checkpoint_file
    try:
        ckpt = load_checkpoint_file(path, map_location='cpu', mmap=True)
    except UnsafeCheckpointError as exc:
        return f'refused ({size} bytes): {exc}'
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the answer
        return f'cannot be loaded ({size} bytes): {type(exc).__name__}: {exc}'
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or 'iter' not in meta or 'epoch' not in meta:
        return 'not a training checkpoint (no meta with epoch and iter)'
    if 'state_dict' not in ckpt:
        return 'not a training checkpoint (no state_dict)'
    return None


_NUMBERED = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _candidates(work_dir: str) -> list[str]:
    """Checkpoints of ``work_dir``, the one ``last_checkpoint`` names first, then
    the others newest first (modification time, then the number in the name)."""
    named = None
    marker = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip() or None
        if named is not None and not osp.isabs(named) and not osp.exists(named):
            named = osp.join(work_dir, osp.basename(named))
    files = [p for p in glob.glob(osp.join(work_dir, '*.pth'))
             if _NUMBERED.match(osp.basename(p))]

    def newest(p: str):
        m = _NUMBERED.match(osp.basename(p))
        return os.stat(p).st_mtime_ns, int(m.group(2))

    files.sort(key=newest, reverse=True)
    ordered = [named] if named else []
    ordered += [p for p in files
                if not named or osp.abspath(p) != osp.abspath(named)]
    return ordered


class NoGoodCheckpoint(RuntimeError):
    """Checkpoints exist but none can be resumed from."""


def find_resume_checkpoint(work_dir: str, warn=print) -> str | None:
    """The newest complete checkpoint of ``work_dir`` (None: there is none at all,
    a fresh start). A broken candidate is reported through ``warn`` naming the
    file and what is wrong, and the next one is tried; when checkpoints exist and
    none is good, :class:`NoGoodCheckpoint` is raised (never a silent fresh
    start)."""
    problems = []
    for path in _candidates(work_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            if problems:
                warn(f'resuming from {path}, the newest good checkpoint, instead')
            return path
        problems.append(f'{path}: {problem}')
        warn(f'cannot resume from {path}: {problem}')
    if problems:
        raise NoGoodCheckpoint(
            f'no checkpoint of {work_dir} can be resumed from:\n  '
            + '\n  '.join(problems)
            + '\nnot starting from scratch; resume from a checkpoint path with '
              '--resume PATH, or move the broken files away to start afresh')
    return None


__all__ = ['commit_file', 'write_text_atomic', 'remove_stale_tmp', 'fsync_dir',
           'checkpoint_problem', 'find_resume_checkpoint', 'NoGoodCheckpoint',
           'TMP_SUFFIX', 'LAST_CHECKPOINT']


def agree_on_resume(runner, warn=print) -> None:
    """One checkpoint for every rank: rank 0's choice of what to resume from (or
    to start afresh) is broadcast, so that ranks that looked at the work dir on
    their own (``--resume`` runs before the process group exists; on a network
    file system they can see different newest files) all load the same file. A
    rank whose own choice differed says so through ``warn``. No-op on one
    process. Every rank must call it (``tools/train.py`` does, after building the
    Runner). :class:`~flsl_mm.engine.hooks.ResumableCheckpointHook` then checks
    that the checkpoint every rank loaded has the same ``meta.iter``."""
    from mmengine.dist import broadcast_object_list, get_rank, get_world_size
    if get_world_size() < 2:
        return
    mine = (runner._load_from, bool(runner._resume))
    choice = [mine]
    broadcast_object_list(choice, src=0)
    chosen = tuple(choice[0])
    if chosen != mine:
        warn(f'rank {get_rank()}: resuming from rank 0\'s choice {chosen[0]} '
             f'(this rank had found {mine[0]})')
    runner._load_from, runner._resume = chosen
