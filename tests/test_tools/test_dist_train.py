"""Distributed training as a user runs it: ``tools/dist_train.sh CONFIG 2`` (torchrun,
2 processes, gloo on CPU). Pretraining through a checkpoint and a ``--resume``
equals the uninterrupted run; detection saves and resumes without hanging or
unused-parameter errors; a non-finite loss on one rank stops every rank."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
from flsl_mm.checkpoints import load_checkpoint_file

PRETRAIN = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'
DET = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def dist_train(repo_root, config, work_dir, *options, expect_ok=True, timeout=300):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               OMP_NUM_THREADS='1')
    cmd = ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', str(work_dir),
           *options]
    start = time.time()
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    if expect_ok:
        assert proc.returncode == 0, out[-5000:]
    return proc.returncode, out, time.time() - start


def pretrain_options(data_root, *extra):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=2',
            'default_hooks.checkpoint.interval=1', *extra]


def scalars(work_dir):
    """Per-iteration logged values (mmengine's vis_data/scalars.json)."""
    files = sorted(work_dir.glob('*/vis_data/scalars.json'))
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    return {r['iter']: r for r in rows if 'loss' in r}


@pytest.fixture(scope='module')
def full_run(repo_root, demo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('dist_full')
    _, out, _ = dist_train(repo_root, PRETRAIN, work, *pretrain_options(demo_root))
    return work, out


def test_two_process_pretraining_writes_checkpoints(full_run):
    work, out = full_run
    # 16 images / (2 ranks x 4) = 2 iterations an epoch
    for epoch in (1, 2):
        ckpt = load_checkpoint_file(work / f'epoch_{epoch}.pth')
        assert ckpt['meta']['iter'] == 2 * epoch
        # every rank's RNG state, gathered on all ranks before rank 0 saved
        assert len(ckpt['rng_states']) == 2
    assert 'Distributed training: True' in out


def test_two_process_resume_equals_uninterrupted_run(full_run, repo_root, demo_root,
                                                     tmp_path):
    """Resuming at an epoch boundary (num_workers=0: the loader restarts there in
    both runs) gives bitwise the same student, teacher, optimiser state, loss
    state and logged losses as the run that never stopped."""
    work, _ = full_run
    _, out, _ = dist_train(repo_root, PRETRAIN, tmp_path,
                           *pretrain_options(demo_root),
                           '--resume', str(work / 'epoch_1.pth'))
    assert 'resumed epoch: 1, iter: 2' in out
    a = load_checkpoint_file(work / 'epoch_2.pth')
    b = load_checkpoint_file(tmp_path / 'epoch_2.pth')
    assert a['state_dict'].keys() == b['state_dict'].keys()
    assert any(k.startswith('teacher.module.') for k in a['state_dict'])
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys() and len(sa) > 0
    for i in sa:
        for name in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(torch.as_tensor(sa[i][name]),
                               torch.as_tensor(sb[i][name])), (i, name)
    la, lb = scalars(work), scalars(tmp_path)
    for it in (3, 4):  # the second epoch, logged by both runs
        for key in ('loss', 'loss_meanshift', 'loss_kmeans', 'loss_vmr'):
            assert la[it][key] == lb[it][key], (it, key)


def test_two_process_probes_are_logged_once_and_change_no_weight(full_run, repo_root,
                                                                  demo_root, tmp_path):
    """The demo config's DenseProbeHook on 2 processes: each rank embeds half of
    the probe set, rank 0 scores (no deadlock), each probe is logged once with
    the numbers tools/analysis/dense_probe.py gives in one process, and the
    weights are bitwise those of the same run without the hook."""
    work, out = full_run
    files = sorted(work.glob('*/vis_data/scalars.json'))
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    probes = [r for r in rows if 'probe/knn_miou' in r]
    assert [r['iter'] for r in probes] == [0, 4]  # start, every 2 epochs (= end)
    assert out.count('dense probe at iteration') == 2
    assert 'tokens embedded on 2 ranks (train/val images per rank: 8/4+8/4)' in out
    tool = tmp_path / 'tool.json'
    proc = subprocess.run(
        [sys.executable, 'tools/analysis/dense_probe.py', PRETRAIN,
         str(work / 'epoch_2.pth'), '--data-root', str(demo_root), '--out', str(tool)],
        cwd=repo_root, env=dict(os.environ, OMP_NUM_THREADS='1'),
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one_process = json.loads(tool.read_text())
    for key in ('knn_miou', 'knn_acc', 'linear_miou', 'linear_acc', 'cluster_miou'):
        assert probes[-1][f'probe/{key}'] == one_process[key], key
    _, plain, _ = dist_train(repo_root, PRETRAIN, tmp_path,
                             *pretrain_options(demo_root, 'custom_hooks=[]'))
    assert 'dense probe' not in plain
    a = load_checkpoint_file(work / 'epoch_2.pth')
    b = load_checkpoint_file(tmp_path / 'epoch_2.pth')
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    for ra, rb in zip(a['rng_states'], b['rng_states']):  # both ranks' streams
        assert torch.equal(ra['torch'], rb['torch']) and ra['python'] == rb['python']


NAN_HOOK = '''
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PoisonRankOneHook(Hook):
    """Makes rank 1's loss non-finite from the second iteration on."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if get_rank() == 1 and runner.iter == 1:
            model = getattr(runner.model, 'module', runner.model)
            model.loss_module.upsilon = float('nan')
'''


def test_non_finite_loss_on_one_rank_stops_every_rank(repo_root, demo_root, tmp_path):
    (tmp_path / 'poison_hook.py').write_text(NAN_HOOK)
    cfg = tmp_path / 'poisoned.py'
    cfg.write_text(f"_base_ = ['{repo_root / PRETRAIN}']\n"
                   "custom_imports = dict(imports=['flsl_mm', 'poison_hook'])\n"
                   "custom_hooks = [dict(type='PoisonRankOneHook')]\n")
    old = os.environ.get('PYTHONPATH', '')
    os.environ['PYTHONPATH'] = f'{tmp_path}{os.pathsep}{old}'
    try:
        rc, out, seconds = dist_train(repo_root, str(cfg), tmp_path / 'work',
                                      *pretrain_options(demo_root), expect_ok=False)
    finally:
        os.environ['PYTHONPATH'] = old
    assert rc != 0
    assert out.count('FloatingPointError') >= 2, out[-4000:]  # both ranks raised
    assert 'non-finite loss nan (on 1 of 2 processes)' in out
    assert 'non-finite loss on another process (on 1 of 2 processes)' in out
    assert seconds < 120  # stopped at once, not after a collective's time-out


def test_two_process_detection_saves_and_resumes(repo_root, demo_root, tmp_path):
    data = [f'train_dataloader.dataset.data_root={demo_root}',
            'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=8', 'train_cfg.max_epochs=2',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1']
    work = tmp_path / 'work'
    _, out, _ = dist_train(repo_root, DET, work, '--no-validate', '--cfg-options',
                           *data, 'train_cfg.max_epochs=1')
    assert (work / 'epoch_1.pth').is_file()
    _, out, _ = dist_train(repo_root, DET, work, '--no-validate', '--resume',
                           '--cfg-options', *data)
    assert 'resumed epoch: 1, iter: 2' in out
    ckpt = load_checkpoint_file(work / 'epoch_2.pth')
    assert ckpt['meta']['iter'] == 4
    assert 'unused parameters' not in out.lower()


def test_two_process_dino_trains_and_resumes_exactly(repo_root, demo_root, tmp_path):
    """DINO under DDP (2 gloo processes): the class token, learned position
    embedding and frozen last layer raise no unused-parameter error, the centre
    is all-reduced, and a resume at the epoch boundary is bitwise the run that
    never stopped (student, teacher, centre)."""
    dino = 'configs/pretrain/dino_vit-tiny-p16_demo.py'
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    _, out, _ = dist_train(repo_root, dino, full, *pretrain_options(demo_root))
    assert 'Distributed training: True' in out and 'loss_dino' in out
    _, out, _ = dist_train(repo_root, dino, resumed, *pretrain_options(demo_root),
                           '--resume', str(full / 'epoch_1.pth'))
    assert 'resumed epoch: 1, iter: 2' in out
    a = load_checkpoint_file(full / 'epoch_2.pth')['state_dict']
    b = load_checkpoint_file(resumed / 'epoch_2.pth')['state_dict']
    assert a.keys() == b.keys() and a['loss_module.center'].abs().sum() > 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
