"""Bad samples in long runs: what is wrong with one, which sample replaces it,
and the list a run and ``tools/misc/check_dataset.py`` write
(docs/pretraining.md, "Bad samples").

A real image folder has bad files (ImageNet's train set: a CMYK JPEG, PNGs named
.JPEG, on many copies a few truncated files; drone footage: zero-byte frames).
Raising stops the whole job, on every rank, possibly after days -- and an exact
resume meets the same file at the same iteration again. So by default a sample
that cannot be read is replaced by another one chosen from its index and the
run's seed (:func:`replacement_index`): every rank, every resume, the same
replacement, so that resumed runs stay bitwise those that never stopped.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

ON_BAD_SAMPLE = ('replace', 'raise')
#: how many replacements in a row before giving up on a sample
MAX_ATTEMPTS = 16


class BadSampleError(ValueError):
    """A sample that cannot be used: ``path`` (the file) and ``reason``. A
    ``ValueError`` naming the file, as before the replacement policy."""

    def __init__(self, path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f'{path}: {reason}')


def replacement_index(index: int, seed: int, attempt: int, size: int) -> int:
    """The sample that stands in for ``index`` at replacement ``attempt`` (0,
    1, ...): a hash of (index, seed, attempt), never ``index`` itself."""
    if size < 2:
        raise BadSampleError('<dataset>', 'the only sample of the dataset is bad')
    words = np.random.SeedSequence([index, seed & ((1 << 64) - 1), attempt,
                                    0xBAD]).generate_state(2, np.uint32)
    other = ((int(words[0]) << 32) | int(words[1])) % (size - 1)
    return other if other < index else other + 1


#: the key under which a dataset item carries the bad samples it replaced
ITEM_KEY = 'bad_samples'


class BadSampleCollate:
    """Wraps a loader's ``collate_fn``: takes each item's list of replaced bad
    samples (``ITEM_KEY``) out before collating and puts all of the batch's, in
    item order, under ``ITEM_KEY`` of the collated dict (always there, usually
    empty), where the training loop reads it."""

    def __init__(self, collate_fn) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items):
        records = []
        for item in items:
            if isinstance(item, dict) and ITEM_KEY in item:
                records.extend(item.pop(ITEM_KEY))
        out = self.collate_fn(items)
        if isinstance(out, dict):
            out[ITEM_KEY] = records
        elif records:
            raise TypeError('the loader\'s collate_fn must give a dict to carry the '
                            'bad samples replaced in the batch')
        return out


def sample_path(dataset, index: int) -> str:
    """The file of sample ``index`` of an mmengine dataset (its ``img_path``)."""
    info = dataset.get_data_info(index) if hasattr(dataset, 'get_data_info') else {}
    return str(info.get('img_path', f'<sample {index}>'))


def default_cap(size: int) -> int:
    """0.1 % of the dataset, at least 1."""
    return max(1, -(-size // 1000))


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """``records`` as JSON lines at ``path``, written atomically (a temporary
    file renamed over it: a reader never sees half a list)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.partial')
    try:
        with os.fdopen(fd, 'w') as f:
            for record in records:
                f.write(json.dumps(record) + '\n')
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of a ``bad_samples.jsonl`` (a run's or ``check_dataset.py``'s);
    a malformed line is an error naming the file and the line."""
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f'{path}, line {number}: not JSON ({exc})') from None
            if not isinstance(record, dict) or 'path' not in record:
                raise ValueError(f'{path}, line {number}: a record needs a "path"')
            records.append(record)
    return records


def skip_list_digest(paths: Iterable[str]) -> str:
    """What identifies a skip list (its set of paths), to refuse a resume with
    another one."""
    return hashlib.sha256('\n'.join(sorted(set(paths))).encode()).hexdigest()[:16]


__all__ = ['ON_BAD_SAMPLE', 'MAX_ATTEMPTS', 'ITEM_KEY', 'BadSampleError',
           'BadSampleCollate', 'replacement_index', 'sample_path', 'default_cap', 'write_records', 'read_records', 'skip_list_digest']
