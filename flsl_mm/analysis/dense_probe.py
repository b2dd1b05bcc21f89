"""Dense probes of frozen tokens (does FLSL cluster tokens by semantics?).

All probes work on the patch grid: labels reach it by majority vote.
1. ``knn_segmentation``: cosine k-NN (k 20, T 0.07 weighting) against train tokens.
2. ``linear_probe``: a linear classifier trained on frozen train tokens.
3. ``hungarian_cluster_miou``: k-means with K = number of classes on val tokens,
   clusters matched to classes by the Hungarian algorithm.
4. ``bbox_knn_top1``: the authors' bbox-aligned k-NN: the 9 tokens at the cell
   centres of a 3 x 3 grid over each image's largest box, labelled with its class;
   an image is correct when any of its 9 tokens' top-1 is right.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

IGNORE = 255


def labels_to_patches(labels: np.ndarray, patch: int, ignore: int = IGNORE
                      ) -> np.ndarray:
    """Majority label of each ``patch x patch`` cell (``ignore`` when a cell has
    no labelled pixel; ties go to the smaller label). ``labels`` is cropped to
    whole patches."""
    h, w = labels.shape[0] // patch, labels.shape[1] // patch
    cells = labels[:h * patch, :w * patch].reshape(h, patch, w, patch)
    cells = cells.transpose(0, 2, 1, 3).reshape(h * w, patch * patch).astype(np.int64)
    valid = cells != ignore
    num = int(cells[valid].max()) + 1 if valid.any() else 1
    counts = np.zeros((h * w, num), np.int64)
    rows = np.broadcast_to(np.arange(h * w)[:, None], cells.shape)
    np.add.at(counts, (rows[valid], cells[valid]), 1)
    out = counts.argmax(1)
    out[~valid.any(1)] = ignore
    return out.reshape(h, w)


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     ignore: int = IGNORE) -> np.ndarray:
    keep = gt != ignore
    idx = gt[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def miou_and_acc(conf: np.ndarray) -> tuple[float, float]:
    """Mean IoU over classes that occur (in GT or prediction), pixel accuracy."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    miou = float((tp[present] / union[present]).mean()) if present.any() else 0.0
    acc = float(tp.sum() / max(conf.sum(), 1))
    return miou, acc


def _weighted_knn(query: torch.Tensor, memory: torch.Tensor, mem_labels: torch.Tensor,
                  num_classes: int, k: int, temperature: float,
                  chunk: int | None = None) -> torch.Tensor:
    """Class votes ``sum exp(cos / T)`` of the k nearest (cosine) memory tokens.

    Queries go in chunks of up to 4096 rows whose similarity block holds at most
    2**28 values (1 GiB) whatever the memory size (default), or ``chunk`` rows."""
    query = F.normalize(query, dim=-1)
    memory = F.normalize(memory, dim=-1)
    k = min(k, memory.shape[0])
    if chunk is None:
        chunk = max(1, min(4096, 2**28 // max(memory.shape[0], 1)))
    out = []
    for start in range(0, query.shape[0], chunk):
        sims = query[start:start + chunk] @ memory.T
        top, idx = sims.topk(k, dim=-1)
        votes = torch.zeros(top.shape[0], num_classes, device=query.device)
        votes.scatter_add_(1, mem_labels[idx], (top / temperature).exp())
        out.append(votes)
    return torch.cat(out)


def _on(device, array: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(array).to(device=device, dtype=dtype)


def knn_segmentation(train_tokens: np.ndarray, train_labels: np.ndarray,
                     val_tokens: np.ndarray, num_classes: int, k: int = 20,
                     temperature: float = 0.07, device: str = 'cpu') -> np.ndarray:
    """Predicted class of each val token (rows of ``(n, C)``), computed on
    ``device`` (numpy in and out)."""
    votes = _weighted_knn(_on(device, val_tokens), _on(device, train_tokens),
                          _on(device, train_labels, torch.long), num_classes, k,
                          temperature)
    return votes.argmax(-1).cpu().numpy()


def linear_probe(train_tokens: np.ndarray, train_labels: np.ndarray,
                 val_tokens: np.ndarray, num_classes: int, epochs: int = 300,
                 lr: float = 0.01, weight_decay: float = 1e-4, seed: int = 0,
                 device: str = 'cpu') -> np.ndarray:
    """Full-batch softmax regression (Adam) on standardised frozen tokens, on
    ``device`` (initialised on the CPU from ``seed``, so every device starts from
    the same weights)."""
    gen = torch.Generator().manual_seed(seed)
    x = _on(device, train_tokens)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    y = _on(device, train_labels, torch.long)
    layer = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.normal_(0, 0.01, generator=gen)
        layer.bias.zero_()
    layer = layer.to(device)
    opt = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():  # also when called under no_grad
        for _ in range(epochs):
            opt.zero_grad()
            F.cross_entropy(layer(x), y).backward()
            opt.step()
    with torch.no_grad():
        v = (_on(device, val_tokens) - mean) / std
        return layer(v).argmax(-1).cpu().numpy()


def kmeans(x: np.ndarray, k: int, iters: int = 50, seed: int = 0) -> np.ndarray:
    """Cosine k-means (k-means++ seeding) -> cluster id of each row."""
    rng = np.random.RandomState(seed)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)
    centres = [x[rng.randint(len(x))]]
    nearest = 1 - x @ centres[0]  # cosine distance to the nearest centre so far
    for _ in range(1, k):
        d = nearest.clip(min=0)
        p = d / d.sum() if d.sum() > 0 else None
        centres.append(x[rng.choice(len(x), p=p)])
        np.minimum(nearest, 1 - x @ centres[-1], out=nearest)
    centres = np.stack(centres)
    assign = np.zeros(len(x), np.int64)
    for _ in range(iters):
        new = (x @ centres.T).argmax(1)
        if np.array_equal(new, assign) and _ > 0:
            break
        assign = new
        for c in range(k):
            members = x[assign == c]
            if len(members):
                m = members.mean(0)
                centres[c] = m / (np.linalg.norm(m) + 1e-8)
    return assign


def hungarian_cluster_miou(tokens: np.ndarray, labels: np.ndarray, num_classes: int,
                           seed: int = 0) -> tuple[float, np.ndarray]:
    """k-means (K = classes present) on tokens, Hungarian-matched to labels.

    Returns the mIoU and the matched prediction of each token.
    """
    keep = labels != IGNORE
    present = np.unique(labels[keep])
    clusters = kmeans(tokens[keep], len(present), seed=seed)
    conf = np.zeros((len(present), len(present)), np.int64)
    for ci, cls in enumerate(present):
        conf[ci] = np.bincount(clusters[labels[keep] == cls], minlength=len(present))
    rows, cols = linear_sum_assignment(-conf)  # maximise matched tokens
    mapping = {c: present[r] for r, c in zip(rows, cols)}
    pred = np.full(len(labels), IGNORE, np.int64)
    pred[keep] = [mapping[c] for c in clusters]
    miou, _ = miou_and_acc(confusion_matrix(pred[keep], labels[keep], num_classes))
    return miou, pred


def bbox_grid_positions(bbox_xywh, grid_hw: tuple[int, int], patch: int
                        ) -> list[tuple[int, int]]:
    """Token (row, col) of the centres of a 3 x 3 grid over the box."""
    x, y, w, h = bbox_xywh
    out = []
    for i in range(3):
        for j in range(3):
            cx, cy = x + (j + 0.5) * w / 3, y + (i + 0.5) * h / 3
            r = min(int(cy // patch), grid_hw[0] - 1)
            c = min(int(cx // patch), grid_hw[1] - 1)
            out.append((r, c))
    return out


def bbox_knn_top1(train_feats: np.ndarray, train_labels: np.ndarray,
                  val_feats: np.ndarray, val_labels: np.ndarray, num_classes: int,
                  ks=(10, 20, 100, 200), temperature: float = 0.07,
                  device: str = 'cpu') -> dict:
    """Top-1 per k. ``*_feats`` are ``(images, 9, C)``, labels ``(images,)``."""
    mem = _on(device, train_feats.reshape(-1, train_feats.shape[-1]))
    mem_labels = _on(device, np.repeat(train_labels, 9), torch.long)
    query = _on(device, val_feats.reshape(-1, val_feats.shape[-1]))
    out = {}
    for k in ks:
        votes = _weighted_knn(query, mem, mem_labels, num_classes, k, temperature)
        top1 = votes.argmax(-1).reshape(len(val_labels), 9).cpu().numpy()
        out[k] = float((top1 == val_labels[:, None]).any(1).mean())
    return out
