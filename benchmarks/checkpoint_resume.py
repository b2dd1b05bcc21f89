#!/usr/bin/env python
"""What preemption safety costs (docs/pretraining.md, "Preemption and resume"):

1. an atomic checkpoint of FLSL pretraining (student + teacher + AdamW state,
   ViT-S/16 and K = 4096 as published): size, the write (serialise, write,
   fsync, rename) and the check ``--resume`` makes before using it;
2. the mid-epoch resume's skip: how long a loader takes to give its first batch
   deep inside an ImageNet-sized epoch (1,281,167 images, 8 ranks x 64), and how
   many images it loads doing so (that batch's only; replaying the loader would
   load and decode every skipped one).

    python benchmarks/checkpoint_resume.py [--arch small] [--images 1281167]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Use the flsl_mm of this checkout even when another one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from mmengine.config import Config

import flsl_mm  # noqa: F401
from flsl_mm.datasets.sample_seeding import SampleSeededDataset, SeededSampler
from flsl_mm.engine.checkpoint_io import checkpoint_problem, commit_file

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py'


def training_checkpoint(arch: str) -> dict:
    """What the runner saves: the model's state dict (student and teacher) and
    AdamW's state over the student (two moments per parameter)."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.arch = arch
    width = {'tiny': 192, 'small': 384, 'base': 768}[arch]
    cfg.model.head.in_channels = width
    model = MODELS.build(cfg.model)
    params = [p for n, p in model.named_parameters()
              if p.requires_grad and not n.startswith('teacher')]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        optimizer.state[p] = dict(step=torch.tensor(1.0), exp_avg=torch.randn_like(p),
                                  exp_avg_sq=torch.rand_like(p))
    return dict(meta=dict(epoch=1, iter=2502), state_dict=model.state_dict(),
                optimizer=optimizer.state_dict())


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _tensors(value)


def time_checkpoint(arch: str, folder: str, repeats: int) -> dict:
    ckpt = training_checkpoint(arch)
    path = os.path.join(folder, 'iter_2502.pth')
    writes = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.save(ckpt, path + '.tmp')
        commit_file(path + '.tmp', path)
        writes.append(time.perf_counter() - start)
    start = time.perf_counter()
    problem = checkpoint_problem(path)
    check = time.perf_counter() - start
    assert problem is None, problem
    tensor_bytes = sum(t.numel() * t.element_size() for t in _tensors(ckpt))
    # what the figures are of: a file that loads back equal, and a check that
    # refuses the same file cut short (as a kill during the write leaves it)
    from flsl_mm.checkpoints import load_checkpoint_file
    back = load_checkpoint_file(path)
    equal = all(torch.equal(a, b) for a, b in zip(_tensors(ckpt), _tensors(back))) \
        and len(list(_tensors(ckpt))) == len(list(_tensors(back)))
    with open(path, 'rb') as f:
        head = f.read(os.path.getsize(path) // 2)
    with open(path + '.cut', 'wb') as f:
        f.write(head)
    cut_problem = checkpoint_problem(path + '.cut')
    return dict(arch=arch, size_mib=os.path.getsize(path) / 2**20,
                tensor_mib=tensor_bytes / 2**20,
                write_s=min(writes), check_s=check, loads_back_equal=equal,
                truncated_refused=cut_problem)


class Unloadable(torch.utils.data.Dataset):
    """A dataset of ``n`` images that counts what is loaded."""

    def __init__(self, n: int) -> None:
        self.n, self.loaded = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        self.loaded += 1
        return index


def time_skip(images: int, world: int, batch: int, fraction: float) -> dict:
    """Rank 0 of ``world`` resumes at ``fraction`` of epoch 17: the time from
    ``start_at`` to the first batch out of a DataLoader over the seeded dataset,
    and how many images were loaded to get it (only that batch's)."""
    data = Unloadable(images)
    sampler = SeededSampler(data, shuffle=True, seed=0)
    sampler.rank, sampler.world_size = 0, world  # rank 0 of `world`
    sampler.num_samples = -(-images // world)
    sampler.total_size = sampler.num_samples * world
    sampler.set_epoch(17)
    loader = torch.utils.data.DataLoader(SampleSeededDataset(data), batch_size=batch,
                                         sampler=sampler, num_workers=0)
    batches = len(loader)
    start_batch = int(batches * fraction)
    start = time.perf_counter()
    sampler.start_at(start_batch * batch)
    first = next(iter(loader))
    seconds = time.perf_counter() - start
    return dict(images=images, world_size=world, batch=batch,
                batches_per_epoch=batches, start_batch=start_batch,
                skip_s=seconds, images_loaded=data.loaded,
                first_batch=first.tolist())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='small', choices=['tiny', 'small', 'base'])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--images', type=int, default=1281167)
    parser.add_argument('--world-size', type=int, default=8)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--fraction', type=float, default=0.95,
                        help='where in the epoch the resume starts')
    parser.add_argument('--out', help='also write the figures as JSON here')
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        ckpt = time_checkpoint(args.arch, folder, args.repeats)
    skip = time_skip(args.images, args.world_size, args.batch, args.fraction)
    print(f'checkpoint, FLSL ViT-{args.arch[0].upper()}/16 (K 4096, student + teacher '
          f'+ AdamW): {ckpt["size_mib"]:.0f} MiB, atomic write {ckpt["write_s"]:.2f} s '
          f'(best of {args.repeats}), --resume check {ckpt["check_s"]:.2f} s')
    print(f'mid-epoch resume at batch {skip["start_batch"]} of '
          f'{skip["batches_per_epoch"]} ({args.images} images, {args.world_size} ranks '
          f'x {args.batch}): first batch in {skip["skip_s"] * 1000:.0f} ms, '
          f'{skip["images_loaded"]} images loaded (that batch only)')
    result = dict(checkpoint=ckpt, skip=skip)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == '__main__':
    main()
