"""The loader view path's data preprocessor: mmpretrain's, without host
synchronisations, and with FLSL's query indices (docs/pretraining.md, "Host
synchronisations")."""
from __future__ import annotations

import torch
from mmpretrain.models.utils import SelfSupDataPreprocessor

from flsl_mm.registry import MODELS


@MODELS.register_module()
class MultiViewDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor`` for a list of view batches (the
    same arguments, the same values out), made for a GPU that is never waited
    for:

    * the BGR -> RGB conversion flips the channel axis (mmpretrain indexes it
      with a Python list, a blocking host-to-device copy of the index on every
      view of every iteration);
    * the batch's ``query_index`` (FLSL: one ``(B, M)`` int64 tensor per student
      view, made by ``flsl_collate`` / ``pack_images_collate`` in the loader)
      is copied with the views and handed to the model, which then gathers
      its queries without host work.

    Every tensor of the batch is one copy (pinned by the loader with
    ``pin_memory=True``; asynchronous with ``non_blocking=True``).
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        if not isinstance(data, dict) or 'inputs' not in data:
            raise TypeError('MultiViewDataPreprocessor takes a batch dict with inputs '
                            '(collate with flsl_collate or default_collate)')
        views = self.cast_data(data['inputs'])
        single = isinstance(views, torch.Tensor)
        views = [views] if single else list(views)
        if self._channel_conversion:
            views = [v.flip(1) for v in views]
        out = self._output([v.float() for v in views], data)
        if single:
            out['inputs'] = out['inputs'][0]
        return out

    def _output(self, views: list[torch.Tensor], data: dict) -> dict:
        """Normalised ``views``, the data samples and the query index."""
        if self._enable_normalize:
            views = [(v - self.mean) / self.std for v in views]
        out = dict(inputs=views, data_samples=self.cast_data(data.get('data_samples')))
        if data.get('query_index') is not None:
            out['query_index'] = self.cast_data(list(data['query_index']))
        return out


__all__ = ['MultiViewDataPreprocessor']
