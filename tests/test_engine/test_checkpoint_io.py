"""Atomic checkpoint files and finding the newest good checkpoint to resume from."""
import os
import time

import pytest
import torch

from flsl_mm.engine.checkpoint_io import (NoGoodCheckpoint, checkpoint_problem,
                                          find_resume_checkpoint, remove_stale_tmp,
                                          write_text_atomic)


def save(path, it, size=5000):
    torch.save(dict(meta=dict(epoch=0, iter=it), state_dict=dict(
        w=torch.arange(size, dtype=torch.float32))), path)
    return path


def test_write_text_atomic_and_stale_tmp(tmp_path):
    target = tmp_path / 'last_checkpoint'
    write_text_atomic(str(target), 'a')
    write_text_atomic(str(target), 'b')
    assert target.read_text() == 'b'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last_checkpoint']
    (tmp_path / 'iter_3.pth.tmp').write_bytes(b'half')
    (tmp_path / 'last_checkpoint.tmp').write_text('x')
    (tmp_path / 'keep.tmp').write_text('not ours')
    assert sorted(remove_stale_tmp(str(tmp_path))) == ['iter_3.pth.tmp',
                                                      'last_checkpoint.tmp']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['keep.tmp', 'last_checkpoint']


def test_checkpoint_problem_names_what_is_wrong(tmp_path):
    good = save(tmp_path / 'good.pth', 4)
    assert checkpoint_problem(str(good)) is None
    data = good.read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    assert 'truncated' in checkpoint_problem(str(tmp_path / 'cut.pth'))
    flipped = bytearray(data)
    at = data.index(b'\x00\x00\x80\x3f')  # inside the tensor data (1.0)
    flipped[at + 3] ^= 0xFF
    (tmp_path / 'flip.pth').write_bytes(bytes(flipped))
    assert 'CRC' in checkpoint_problem(str(tmp_path / 'flip.pth'))
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert checkpoint_problem(str(tmp_path / 'empty.pth')) == 'empty file (0 bytes)'
    torch.save(torch.zeros(3), tmp_path / 'tensor.pth')
    assert 'not a training checkpoint' in checkpoint_problem(str(tmp_path / 'tensor.pth'))
    assert checkpoint_problem(str(tmp_path / 'missing.pth')) == 'file not found'


def test_find_resume_checkpoint_falls_back_to_the_newest_good_one(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None  # nothing yet: fresh start
    old = save(tmp_path / 'epoch_1.pth', 2)
    mid = save(tmp_path / 'iter_3.pth', 3)
    newest = save(tmp_path / 'epoch_2.pth', 4)
    now = time.time()
    for i, p in enumerate((old, mid, newest)):
        os.utime(p, (now + i, now + i))
    (tmp_path / 'last_checkpoint').write_text(str(newest))
    assert find_resume_checkpoint(str(tmp_path)) == str(newest)
    newest.write_bytes(newest.read_bytes()[:100])  # truncated latest
    said = []
    assert find_resume_checkpoint(str(tmp_path), warn=said.append) == str(mid)
    assert said[0].startswith(f'cannot resume from {newest}: truncated')
    assert said[1] == f'resuming from {mid}, the newest good checkpoint, instead'
    for p in (old, mid):
        p.write_bytes(b'')
    with pytest.raises(NoGoodCheckpoint) as err:
        find_resume_checkpoint(str(tmp_path), warn=lambda m: None)
    text = str(err.value)
    assert all(str(p) in text for p in (old, mid, newest))
    assert 'not starting from scratch' in text
