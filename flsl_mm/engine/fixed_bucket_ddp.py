"""DDP whose gradient buckets keep one layout for the whole run, so that a
resumed run sums gradients exactly as the run that never stopped
(docs/pretraining.md, "Exact mid-epoch resume").

DDP flattens the gradients into buckets and all-reduces each bucket; after the
first iterations of *every* run it rebuilds the buckets in the order the
gradients became ready. A ring all-reduce (gloo's, NCCL's) adds the ranks'
values in an order that depends on an element's position in its bucket, so with
more than 2 processes a different layout gives different last bits. A resumed
run trains its first iterations on the initial layout where the uninterrupted
run had long rebuilt its buckets: measured with 4 processes, every weight off by
up to 4e-9 after one epoch. With 2 processes a sum of two values does not depend
on the order, which is why 2-process tests could not see it.

:class:`FixedBucketDDP` keeps the initial layout (the parameters in reverse
order of definition, about the order of the backward pass) in every run: the
reducer is asked not to rebuild. It costs nothing per iteration.
"""
from __future__ import annotations

from mmengine.model import MMDistributedDataParallel
from flsl_mm.registry import MODEL_WRAPPERS


class _NoRebuildReducer:
    """The DDP reducer, except that it never rebuilds its buckets."""

    def __init__(self, reducer) -> None:
        object.__setattr__(self, 'reducer', reducer)

    def _rebuild_buckets(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, 'reducer'), name)


@MODEL_WRAPPERS.register_module()
class FixedBucketDDP(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` (same arguments) with one bucket
    layout for the whole run (see the module docstring). The pretraining
    runtime's ``model_wrapper_cfg``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.reducer, '_rebuild_buckets'):
            raise RuntimeError('FixedBucketDDP: this torch\'s DDP reducer has no '
                               '_rebuild_buckets; its bucket layout cannot be kept')
        self.reducer = _NoRebuildReducer(self.reducer)

    def register_comm_hook(self, *args, **kwargs):
        raise NotImplementedError('FixedBucketDDP does not take communication hooks '
                                  '(they need the reducer itself)')


__all__ = ['FixedBucketDDP']
