"""Fixes for running mmengine 0.10 / mmdet 3.3 / mmpretrain 1.2 on torch >= 2.6 and
numpy 2. Applied once when ``flsl_mm`` is imported; each fix says what it fixes.
Nothing in site-packages is edited: we re-register or wrap at run time.
"""
from __future__ import annotations

import os.path as osp

import torch

_APPLIED = False


def _load_trusted(filename, map_location=None):
    """``torch.load`` of a checkpoint the user asked for, pickles allowed."""
    return torch.load(filename, map_location=map_location, weights_only=False)


def _fix_mmengine_torch_load() -> None:
    """mmengine 0.10.7 calls ``torch.load(f)`` without ``weights_only``.

    Since torch 2.6 the default is ``weights_only=True``, which refuses the numpy
    scalars / arrays and ``HistoryBuffer`` objects that mmengine itself writes into
    every checkpoint (message hub, meta), so ``--resume`` and ``load_from`` break
    with an ``UnpicklingError``. We re-register mmengine's local-file loader
    (the scheme every path without a URL prefix goes through) with
    ``weights_only=False`` -- mmengine's behaviour under torch < 2.6. URL
    loaders are left alone: flsl_mm never downloads weights. Only files the
    user names in a config or on the command line go through this loader;
    treat checkpoints like code and load only trusted ones.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):  # noqa: F811
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return _load_trusted(filename, map_location)


def apply() -> None:
    """Apply every fix (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _fix_mmengine_torch_load()
    _APPLIED = True
