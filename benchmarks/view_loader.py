#!/usr/bin/env python
"""Loader worker throughput of the two view paths, and the device step.

    python benchmarks/view_loader.py [--method flsl|dino] [--images 48]
        [--image-size 375 500] [--batch 64] [--device cpu|cuda]
        [--loader-batches 6] [--feed-workers N] [--out FILE]

On generated JPEGs of ImageNet's typical size (375 x 500, quality 90), each
sample under its own seed as in a run:

* one core (this process, one thread), the transforms alone: decoding
  (``LoadImageLikeImageFolder``: BGR array for the CPU path, RGB tensor for the
  device path), the CPU path (decode + the views made with PIL by
  ``FLSLMultiView`` / ``DINOMultiCrop`` + packing: the published configs) and
  the device path (decode + the same parameters drawn with ``on_device=True`` +
  packing: the ``-gpuaug`` configs);
* a real ``DataLoader`` with one worker process (the transforms plus collation
  and the transfer of the batch to the main process), batch ``--batch``;
* ``DeviceViewPreprocessor`` on one batch of device-path samples on ``--device``
  (seconds per batch, after a warm-up batch; all cores on the CPU);
* with ``--feed-workers N``: what N loader workers plus the data preprocessor on
  ``--device`` deliver, both paths (``tools/misc/gpu_check.py`` runs this with
  the node's cores per GPU).

docs/benchmarks.md has the numbers.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VIEWS = dict(
    flsl=dict(type='FLSLMultiView', patch_size=16, global_size=224, local_size=96,
              teacher_scale=(0.8, 1.0), student_scale=(0.5, 1.0),
              local_scale=(0.05, 0.4), num_local_crops=2, global_window=3,
              local_window=2),
    dino=dict(type='DINOMultiCrop', global_size=224, local_size=96,
              global_scale=(0.4, 1.0), local_scale=(0.05, 0.4), num_local_crops=10))


def make_jpegs(folder: Path, count: int, size) -> list[str]:
    """Photo-like JPEGs: smooth colour fields with texture and edges."""
    import numpy as np
    from PIL import Image
    rng = np.random.RandomState(0)
    h, w = size
    paths = []
    for i in range(count):
        coarse = rng.rand(h // 25 + 1, w // 25 + 1, 3)
        img = np.kron(coarse, np.ones((25, 25, 1)))[:h, :w] * 180
        img += rng.rand(h, w, 3) * 40 + np.sin(np.arange(w) / (3 + i % 7))[None, :, None] * 30
        path = folder / f'img_{i:04d}.jpg'
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def make_jpegs_once(folder: Path, count: int, size) -> list[str]:
    """:func:`make_jpegs` into ``folder`` unless it holds them already."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted(str(p) for p in folder.glob('img_*.jpg'))
    return paths if len(paths) == count else make_jpegs(folder, count, size)


def pipeline(method: str, on_device: bool):
    """The worker pipeline of the published (``on_device=False``) or the
    ``-gpuaug`` config."""
    from mmcv.transforms import Compose
    keys = ['query_masks'] * (method == 'flsl') + ['view_params'] * on_device
    return Compose([dict(type='LoadImageLikeImageFolder', to_tensor=on_device),
                    dict(VIEWS[method], on_device=on_device),
                    dict(type='PackInputs', algorithm_keys=keys,
                         meta_keys=['img_path'])])


def collate_of(method: str, on_device: bool):
    """The published configs' collate function of each path."""
    from mmengine.dataset import default_collate

    from flsl_mm.datasets import flsl_collate, pack_images_collate
    if on_device:
        return pack_images_collate
    return flsl_collate if method == 'flsl' else default_collate


def preprocessor_of(on_device: bool, device: str = 'cpu'):
    """The published configs' data preprocessor of each path, on ``device``."""
    from flsl_mm.models import DeviceViewPreprocessor, MultiViewDataPreprocessor
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    pre = (DeviceViewPreprocessor(mean, std) if on_device else
           MultiViewDataPreprocessor(mean=mean, std=std, to_rgb=True,
                                     non_blocking=True))
    return pre.to(device)


class SeededImages:
    """``transform`` of image ``i % len(paths)`` under the seed of position
    ``i`` (as :class:`~flsl_mm.datasets.SampleSeededDataset` in a worker)."""

    def __init__(self, transform, paths) -> None:
        self.transform, self.paths = transform, paths

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, i: int):
        from flsl_mm.datasets.sample_seeding import sample_seed, seeded_rng
        with seeded_rng(sample_seed(0, 0, i), restore=False):
            return self.transform(dict(img_path=self.paths[i % len(self.paths)]))


def core_throughput(transform, paths, repeats: int = 2) -> float:
    """Images per second of ``transform`` in this process."""
    data = SeededImages(transform, paths)
    data[0]  # warm-up
    start = time.perf_counter()
    for i in range(len(paths) * repeats):
        data[i]
    return len(paths) * repeats / (time.perf_counter() - start)


def loader_throughput(transform, paths, collate, batch: int, batches: int) -> float:
    """Images per second of a DataLoader with one worker, after its first batch."""
    from torch.utils.data import DataLoader
    loader = DataLoader(SeededImages(transform, paths), batch_size=batch,
                        num_workers=1, collate_fn=collate)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    del it  # ends the worker
    return batch * batches / seconds


def feed_rate(method: str, on_device: bool, paths, workers: int, batch: int,
              batches: int, device: str) -> float:
    """Images per second that ``workers`` loader processes plus the data
    preprocessor on ``device`` deliver as normalised view batches (what one GPU
    gets): the published path (views in the workers, ``MultiViewDataPreprocessor``)
    or the ``-gpuaug`` path (``DeviceViewPreprocessor``). Pinned memory on CUDA."""
    import torch
    from torch.utils.data import DataLoader
    pre = preprocessor_of(on_device, device)
    loader = DataLoader(SeededImages(pipeline(method, on_device), paths),
                        batch_size=batch, num_workers=workers,
                        collate_fn=collate_of(method, on_device),
                        pin_memory=device == 'cuda', persistent_workers=False)
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    it = iter(loader)
    pre(next(it), training=True)  # worker start-up, warm-up
    sync()
    start = time.perf_counter()
    for _ in range(batches):
        out = pre(next(it), training=True)
    sync()
    seconds = time.perf_counter() - start
    del it, out
    return batch * batches / seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--method', default='flsl', choices=sorted(VIEWS))
    p.add_argument('--images', type=int, default=48)
    p.add_argument('--image-size', type=int, nargs=2, default=[375, 500],
                   metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--loader-batches', type=int, default=6)
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--feed-workers', type=int, default=0,
                   help='also measure what this many loader workers + the data '
                   'preprocessor on --device deliver, both paths (0: skip)')
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    import flsl_mm  # noqa: F401  (registers the transforms)
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope

    from flsl_mm.datasets import pack_images_collate

    r = dict(method=args.method, image_size=args.image_size, images=args.images)
    with tempfile.TemporaryDirectory() as tmp, \
            DefaultScope.overwrite_default_scope('mmpretrain'):
        paths = make_jpegs(Path(tmp), args.images, args.image_size)
        cpu_path, dev_path = pipeline(args.method, False), pipeline(args.method, True)
        for name, t in (('decode_bgr', Compose([dict(type='LoadImageLikeImageFolder')])),
                        ('decode_tensor', Compose([dict(type='LoadImageLikeImageFolder',
                                                        to_tensor=True)])),
                        ('cpu_path', cpu_path), ('device_path', dev_path)):
            r[f'{name}_images_per_s'] = round(core_throughput(t, paths), 1)
        r['ratio_per_core'] = round(r['device_path_images_per_s']
                                    / r['cpu_path_images_per_s'], 2)
        r['loader_batch'] = args.batch
        for name, t, collate in (('cpu_path', cpu_path, collate_of(args.method, False)),
                                 ('device_path', dev_path, pack_images_collate)):
            r[f'{name}_one_worker_images_per_s'] = round(loader_throughput(
                t, paths, collate, args.batch, args.loader_batches), 1)
        r['ratio_one_worker'] = round(r['device_path_one_worker_images_per_s']
                                      / r['cpu_path_one_worker_images_per_s'], 2)
        data = SeededImages(dev_path, paths)
        batch = pack_images_collate([data[i] for i in range(args.batch)])
        if args.feed_workers:
            torch.set_num_threads(os.cpu_count() or 1)
            for name, on_device in (('cpu_path', False), ('device_path', True)):
                r[f'{name}_feed_images_per_s'] = round(feed_rate(
                    args.method, on_device, paths, args.feed_workers, args.batch,
                    args.loader_batches, args.device), 1)
            r['feed_workers'] = args.feed_workers
    torch.set_num_threads(os.cpu_count() or 1)  # the device step: all cores
    pre = preprocessor_of(True, args.device)
    pre(batch, training=True)  # warm-up
    sync = torch.cuda.synchronize if args.device == 'cuda' else (lambda: None)
    sync()
    start = time.perf_counter()
    out = pre(batch, training=True)
    sync()
    r.update(device=args.device, device_step_s_per_batch=round(time.perf_counter() - start, 3),
             views=[list(v.shape) for v in out['inputs']])
    print(f"{args.method} views, {args.image_size[0]}x{args.image_size[1]} JPEGs, one "
          f"core: decode {r['decode_tensor_images_per_s']:.0f} img/s (tensor) / "
          f"{r['decode_bgr_images_per_s']:.0f} (BGR array); CPU path "
          f"{r['cpu_path_images_per_s']:.1f} img/s; device path (worker part) "
          f"{r['device_path_images_per_s']:.0f} img/s = {r['ratio_per_core']:.1f}x. "
          f"One-worker DataLoader: {r['cpu_path_one_worker_images_per_s']:.1f} vs "
          f"{r['device_path_one_worker_images_per_s']:.0f} img/s = "
          f"{r['ratio_one_worker']:.1f}x. Device step on {args.device}: "
          f"{r['device_step_s_per_batch']:.3f} s per batch of {len(batch['data_samples'])}")
    if args.feed_workers:
        print(f"{args.feed_workers} workers + preprocessor on {args.device}: CPU path "
              f"{r['cpu_path_feed_images_per_s']:.0f} img/s, device path "
              f"{r['device_path_feed_images_per_s']:.0f} img/s")
    if args.out:
        Path(args.out).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
