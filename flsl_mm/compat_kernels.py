"""mmcv kernels without compiled mmcv, in plain torch: what mmdet's and mmseg's
models reach on a GPU beyond nms / RoIAlign (``docs/compat.md``, "mmcv.ops
without compiled ops").

Each function has the signature of the compiled kernel ``mmcv._ext.<name>``
that mmcv's Python op calls (filling the tensors mmcv hands it), so mmcv's own
functions, autograd and argument checks run unchanged with flsl_mm's stand-in
(``flsl_mm/mmcv_ext_standin.py``):

* ``sigmoid_focal_loss_forward`` / ``_backward`` and ``softmax_focal_loss_*``:
  mmcv's CUDA kernels' formulas (mmdet's ``FocalLoss`` calls them whenever the
  prediction is a CUDA tensor: RetinaNet, FCOS, ATSS, GFL);
* ``softnms``: mmcv's CPU kernel (``batched_nms`` with ``type='soft_nms'``),
  its sequential order, swaps and float arithmetic;
* ``nms_match``: mmcv's CPU kernel (mmdet's ``ScoreHLRSampler``);
* ``ms_deform_attn_forward`` / ``_backward``: the CUDA branch of
  ``MultiScaleDeformableAttention`` through mmcv's own pure-PyTorch function
  (its gradients by autograd).

Loaded by module name by the stand-in; imports nothing of the flsl_mm package
(the interpreter start-up hook may load it without it).
"""
from __future__ import annotations

import numpy as np
import torch

FLT_MIN = float(np.finfo(np.float32).tiny)


# ------------------------------------------------------------------ focal losses
def _class_weight(weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """``weight[target]`` per sample (the kernels' ``weight[t]``), None without."""
    if weight is None or weight.numel() == 0:
        return None
    return weight.index_select(0, target.clamp(0, weight.numel() - 1))


def sigmoid_focal_loss_forward(input, target, weight, output, gamma=2.0, alpha=0.25):
    """Fills ``output`` ``(N, C)``: ``-alpha (1-p)^g log p`` at the target class,
    ``-(1-alpha) p^g log(1-p)`` elsewhere, ``p = sigmoid(x)`` (a target ``C``:
    background), times the target's class weight."""
    p = torch.sigmoid(input)
    classes = torch.arange(input.shape[1], device=input.device)
    positive = (target.unsqueeze(1) == classes).to(input.dtype)
    term_p = (1 - p).pow(gamma) * torch.log(p.clamp(min=FLT_MIN))
    term_n = p.pow(gamma) * torch.log((1 - p).clamp(min=FLT_MIN))
    loss = -positive * alpha * term_p - (1 - positive) * (1 - alpha) * term_n
    w = _class_weight(weight, target)
    output.copy_(loss if w is None else loss * w.unsqueeze(1))


def sigmoid_focal_loss_backward(input, target, weight, grad_input, gamma=2.0,
                                alpha=0.25):
    """Fills ``grad_input``: d(loss)/dx of :func:`sigmoid_focal_loss_forward`
    (the kernel's closed form)."""
    p = torch.sigmoid(input)
    classes = torch.arange(input.shape[1], device=input.device)
    positive = (target.unsqueeze(1) == classes).to(input.dtype)
    log_p = torch.log(p.clamp(min=FLT_MIN))
    log_n = torch.log((1 - p).clamp(min=FLT_MIN))
    term_p = (1 - p).pow(gamma) * (1 - p - gamma * p * log_p)
    term_n = p.pow(gamma) * (gamma * (1 - p) * log_n - p)
    grad = -positive * alpha * term_p - (1 - positive) * (1 - alpha) * term_n
    w = _class_weight(weight, target)
    grad_input.copy_(grad if w is None else grad * w.unsqueeze(1))


def _target_prob(softmax: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return softmax.gather(1, target.clamp(min=0).unsqueeze(1)).squeeze(1)


def softmax_focal_loss_forward(input, target, weight, output, gamma=2.0, alpha=0.25):
    """Fills ``output`` ``(N,)``: ``-alpha (1-p_t)^g log p_t`` of the softmax
    probabilities ``input`` (0 where the target is negative), times the
    target's class weight."""
    pred = _target_prob(input, target)
    loss = -alpha * (1 - pred).pow(gamma) * torch.log(pred.clamp(min=FLT_MIN))
    loss = torch.where(target >= 0, loss, torch.zeros_like(loss))
    w = _class_weight(weight, target)
    output.copy_(loss if w is None else loss * w)


def softmax_focal_loss_backward(input, target, weight, buff, grad_input, gamma=2.0,
                                alpha=0.25):
    """Fills ``buff`` ``(N,)`` and ``grad_input`` ``(N, C)``: the kernel's two
    passes, ``buff[n] (1[c = t] - p_c)``."""
    pred = _target_prob(input, target)
    b = alpha * (-(1 - pred).pow(gamma) + gamma * (1 - pred).pow(gamma - 1) * pred
                 * torch.log(pred.clamp(min=FLT_MIN)))
    b = torch.where(target >= 0, b, torch.zeros_like(b))
    w = _class_weight(weight, target)
    buff.copy_(b if w is None else b * w)
    classes = torch.arange(input.shape[1], device=input.device)
    flag = (target.unsqueeze(1) == classes).to(input.dtype)
    grad_input.copy_(buff.unsqueeze(1) * (flag - input))


# ------------------------------------------------------------------ soft-NMS
def softnms(boxes, scores, dets, iou_threshold=0.3, sigma=0.5, min_score=1e-3,
            method=1, offset=0):
    """mmcv's ``softnms`` CPU kernel: fills ``dets`` ``(N, 5)`` (boxes and decayed
    scores in the kernel's order) and returns the kept boxes' indices. Each step
    takes the highest remaining score (the first of ties), decays the others by
    their IoU with it (0 naive, 1 linear, 2 gaussian) and drops those below
    ``min_score`` by swapping the last box in, as the kernel does, in float32."""
    n = int(boxes.shape[0])
    if n == 0:
        return torch.empty(0, dtype=torch.long)
    b = boxes.detach().cpu().numpy().astype(np.float32)
    x1, y1, x2, y2 = (b[:, k].copy() for k in range(4))
    sc = scores.detach().cpu().numpy().astype(np.float32).copy()
    off = np.float32(offset)
    areas = (x2 - x1 + off) * (y2 - y1 + off)
    inds = np.arange(n, dtype=np.int64)
    de = np.zeros((n, 5), np.float32)
    thr, sig, low = np.float32(iou_threshold), np.float32(sigma), np.float32(min_score)
    arrays = (x1, y1, x2, y2, sc, areas, inds)
    i = 0
    while i < n:
        m = i + int(np.argmax(sc[i:n]))  # the first maximum, as the kernel's '<'
        for a in arrays:
            a[i], a[m] = a[m], a[i]
        de[i] = (x1[i], y1[i], x2[i], y2[i], sc[i])
        rest = slice(i + 1, n)
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest])
                       - np.maximum(x1[i], x1[rest]) + off)
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest])
                       - np.maximum(y1[i], y1[rest]) + off)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        if method == 0:
            weight = np.where(ovr >= thr, np.float32(0), np.float32(1))
        elif method == 1:
            weight = np.where(ovr >= thr, np.float32(1) - ovr, np.float32(1))
        else:
            weight = np.exp(-(ovr * ovr) / sig).astype(np.float32)
        sc[rest] = sc[rest] * weight.astype(np.float32)
        pos = i + 1
        while pos < n:  # drop the boxes below min_score: the last box moves in
            if sc[pos] < low:
                for a in arrays:
                    a[pos] = a[n - 1]
                n -= 1
            else:
                pos += 1
        i += 1
    dets.copy_(torch.from_numpy(de))
    return torch.from_numpy(inds[:n].copy())


# ------------------------------------------------------------------ nms_match
def nms_match(dets, iou_threshold):
    """mmcv's ``nms_match`` CPU kernel: boxes ``(N, 5)`` (x1, y1, x2, y2,
    score) visited in decreasing score; each kept box with the boxes it
    suppresses (IoU >= threshold), as lists of indices, the kept one first."""
    order = dets[:, 4].sort(0, descending=True)[1].tolist()
    d = dets.detach().cpu().numpy()
    x1, y1, x2, y2 = (d[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    zero = d.dtype.type(0)
    suppressed = np.zeros(len(d), bool)
    matched = []
    for rank, i in enumerate(order):
        if suppressed[i]:
            continue
        group = [i]
        rest = [j for j in order[rank + 1:] if not suppressed[j]]
        if rest:
            j = np.array(rest)
            w = np.maximum(zero, np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]))
            h = np.maximum(zero, np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]))
            inter = w * h
            ovr = inter / (areas[i] + areas[j] - inter)
            hit = j[ovr >= d.dtype.type(iou_threshold)]
            suppressed[hit] = True
            group += hit.tolist()
        matched.append(group)
    return matched


# ------------------------------------------------------------------ deformable attention
def _ms_deform_attn(value, spatial_shapes, sampling_loc, attn_weight):
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes, sampling_loc,
                                               attn_weight)


def ms_deform_attn_forward(value, spatial_shapes, level_start_index, sampling_loc,
                           attn_weight, im2col_step=64):
    """``MultiScaleDeformableAttention``'s CUDA kernel, through mmcv's
    pure-PyTorch function: ``(bs, num_queries, embed_dims)``."""
    with torch.no_grad():
        return _ms_deform_attn(value, spatial_shapes, sampling_loc, attn_weight)


def ms_deform_attn_backward(value, spatial_shapes, level_start_index, sampling_loc,
                            attn_weight, grad_output, grad_value, grad_sampling_loc,
                            grad_attn_weight, im2col_step=64):
    """Fills the gradients of value, sampling locations and attention weights
    (autograd of the pure-PyTorch function)."""
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_(True)
                  for t in (value, sampling_loc, attn_weight)]
        out = _ms_deform_attn(inputs[0], spatial_shapes, inputs[1], inputs[2])
        grads = torch.autograd.grad(out, inputs, grad_output)
    for target, grad in zip((grad_value, grad_sampling_loc, grad_attn_weight), grads):
        target.copy_(grad)


#: the kernels of this module, by mmcv's names
KERNELS = ('sigmoid_focal_loss_forward', 'sigmoid_focal_loss_backward',
           'softmax_focal_loss_forward', 'softmax_focal_loss_backward', 'softnms',
           'nms_match', 'ms_deform_attn_forward', 'ms_deform_attn_backward')

__all__ = list(KERNELS)
