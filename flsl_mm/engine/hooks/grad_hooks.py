"""Gradient treatments of the reference applied right before each optimiser step.

Both act through ``optimizer.register_step_pre_hook``: that runs after backward,
after AMP's unscaling and before the update, with or without DDP, which mmengine's
hooks (before/after the whole ``train_step``) cannot reach.
"""
from __future__ import annotations

import torch
from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS
from .runner_model import runner_model


def _wrappers(runner):
    wrapper = runner.optim_wrapper
    if hasattr(wrapper, 'optim_wrappers'):  # OptimWrapperDict
        return list(wrapper.optim_wrappers.values())
    return [wrapper]


def _optimizers(runner):
    return [w.optimizer for w in _wrappers(runner)]


def clip_grad_per_param(params, max_norm: float) -> torch.Tensor | None:
    """The reference's clipping: each parameter's gradient to norm <= max_norm.

    ``grad *= min(1, max_norm / (|grad| + 1e-6))`` for every parameter with a
    gradient, with ``torch._foreach_*`` kernels: no host sync (the reference's
    ``if clip_coef < 1`` branch is a ``clamp``; multiplying by exactly 1 leaves a
    gradient bitwise unchanged). Returns the gradient norms before clipping (one
    tensor), or None when no parameter has a gradient.
    """
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        return None
    norms = torch.stack(torch._foreach_norm(grads, 2))
    coefs = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, list(coefs.to(grads[0].dtype).unbind()))
    return norms


@HOOKS.register_module()
class PerParamGradClipHook(Hook):
    """Clip every parameter's gradient to L2 norm ``max_norm`` (3.0 in FLSL).

    mmengine's ``clip_grad`` clips the *total* norm; the reference clips each
    parameter on its own, which this hook reproduces.

    Under AMP the gradients are unscaled before the optimiser step (the
    ``GradScaler``'s ``unscale_``, as PyTorch prescribes before clipping): a
    ``fused`` optimiser would otherwise receive them *scaled* (its kernel
    unscales) and the clip would act on scaled values. An ``optim_wrapper`` with
    mmengine's own ``clip_grad`` as well is refused (two clippings).
    """

    def __init__(self, max_norm: float = 3.0) -> None:
        self.max_norm = max_norm
        self._handles = []
        self._unscaling = []

    def before_train(self, runner) -> None:
        params = [p for p in runner_model(runner).parameters() if p.requires_grad]

        def clip(*_) -> None:  # a step pre-hook must return None
            clip_grad_per_param(params, self.max_norm)

        for wrapper in _wrappers(runner):
            if getattr(wrapper, 'clip_grad_kwargs', None):
                raise ValueError(
                    'PerParamGradClipHook clips each parameter to norm '
                    f'{self.max_norm} (FLSL); optim_wrapper.clip_grad '
                    f'({wrapper.clip_grad_kwargs}) would clip again: remove it, or '
                    'set default_hooks.grad_clip.max_norm')
            self._handles.append(wrapper.optimizer.register_step_pre_hook(clip))
            if getattr(wrapper, 'loss_scaler', None) is not None:
                self._unscale_before_step(wrapper)

    def _unscale_before_step(self, wrapper) -> None:
        step = wrapper.step

        def unscaled_step(**kwargs):
            if wrapper.loss_scaler.is_enabled():
                wrapper.loss_scaler.unscale_(wrapper.optimizer)
            return step(**kwargs)

        wrapper.step = unscaled_step  # an instance attribute, removed after train
        self._unscaling.append(wrapper)

    def after_train(self, runner) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for wrapper in self._unscaling:
            del wrapper.step
        self._unscaling.clear()


@HOOKS.register_module()
class FreezeLastLayerHook(Hook):
    """Drop the student head's last-layer gradients in the first epochs (§2).

    Gradients are set to ``None`` (not zero) so that AdamW neither moves nor decays
    those weights, as in the reference's ``cancel_gradients_last_layer``.
    """

    def __init__(self, freeze_last_layer: int = 1) -> None:
        self.freeze_last_layer = freeze_last_layer
        self._handles = []

    def before_train(self, runner) -> None:
        params = runner_model(runner).head.last_layer_parameters()

        def cancel(*_) -> None:
            if runner.epoch < self.freeze_last_layer:
                for p in params:
                    p.grad = None

        for opt in _optimizers(runner):
            self._handles.append(opt.register_step_pre_hook(cancel))

    def after_train(self, runner) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


__all__ = ['PerParamGradClipHook', 'FreezeLastLayerHook', 'clip_grad_per_param']
