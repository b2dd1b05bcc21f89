"""tools/train.py on the demo pretraining config: checkpoints, --resume, exactness."""
import subprocess
import sys

import pytest
import torch

DEMO = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def train(repo_root, work_dir, data_root, *extra, config=DEMO):
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir),
           '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
           'train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=2',
           'default_hooks.checkpoint.interval=1', *extra]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def full_run(repo_root, demo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('full')
    log = train(repo_root, work, demo_root)  # 16 images / 8 = 2 iters x 2 epochs
    return work, log


def test_train_writes_checkpoints_and_finite_losses(full_run):
    work, log = full_run
    assert (work / 'epoch_1.pth').is_file() and (work / 'epoch_2.pth').is_file()
    for name in ('loss_meanshift', 'loss_kmeans', 'loss_vmr', 'teacher_temp',
                 # the health monitors (docs/monitors.md)
                 'mon_target_entropy', 'mon_coverage', 'mon_prototypes_used',
                 'mon_agreement', 'mon_sa_attention_entropy',
                 'mon_ca_attention_entropy', 'mon_displacement', 'mon_token_spread',
                 'mon_teacher_student_dist', 'mon_teacher_init_weight'):
        assert name in log, name
    ckpt = torch.load(work / 'epoch_1.pth', weights_only=False)
    assert ckpt['meta']['iter'] == 2 and ckpt['meta']['epoch'] == 1
    keys = ckpt['state_dict'].keys()
    assert any(k.startswith('teacher.module.backbone.') for k in keys)
    assert 'loss_module.center' in keys and 'rng_states' in ckpt
    assert 'optimizer' in ckpt


def test_resume_is_exact(full_run, repo_root, demo_root, tmp_path):
    work, _ = full_run
    log = train(repo_root, tmp_path, demo_root, '--resume', str(work / 'epoch_1.pth'))
    assert 'resumed epoch: 1, iter: 2' in log  # the torch.load compat fix at work
    a = torch.load(work / 'epoch_2.pth', weights_only=False)['state_dict']
    b = torch.load(tmp_path / 'epoch_2.pth', weights_only=False)['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_an_override_of_the_renamed_schedule_hook_key_is_explained(repo_root, tmp_path):
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['{repo_root / DEMO}']\n"
                     "default_hooks = dict(flsl_schedule=dict(start_intraview=0.5))\n")
    proc = subprocess.run([sys.executable, 'tools/train.py', str(child)],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'default_hooks.loss_schedule' in proc.stderr and 'rename the key' in proc.stderr


def _scalars(work):
    import json
    path = sorted(work.glob('*/vis_data/scalars.json'))[-1]
    return [json.loads(line) for line in path.read_text().splitlines()
            if '"loss"' in line]


def test_views_on_the_device_train_exactly_like_the_pil_path(full_run, repo_root,
                                                            demo_root, tmp_path):
    """The -gpuaug demo config (the loader draws, DeviceViewPreprocessor makes
    the views; here on the CPU, with a loader worker) from the same seed: the
    same losses and monitors at every iteration and bitwise the same model as
    the PIL path (docs/pretraining.md, "Views on the device")."""
    work, _ = full_run
    log = train(repo_root, tmp_path, demo_root,
                'train_dataloader.num_workers=1', config=DEMO.replace('.py', '-gpuaug.py'))
    assert 'DeviceViewPreprocessor' in log and 'pack_images_collate' in log
    pil, dev = _scalars(work), _scalars(tmp_path)
    assert len(pil) == len(dev) == 4
    keys = [k for k in pil[0] if k.startswith(('loss', 'mon_'))]
    assert len(keys) >= 14
    assert [[r[k] for k in keys] for r in pil] == [[r[k] for k in keys] for r in dev]
    a = torch.load(work / 'epoch_2.pth', weights_only=False)['state_dict']
    b = torch.load(tmp_path / 'epoch_2.pth', weights_only=False)['state_dict']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
