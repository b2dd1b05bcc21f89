"""tools/train.py on the demo pretraining config: checkpoints, --resume, exactness;
every load on the safe path, and a checkpoint of the old format (numpy objects
pickled inside) resumed through --trust-checkpoint or converted once."""
import json
import subprocess
import sys

import pytest
import torch

from flsl_mm.checkpoints import load_checkpoint_file

DEMO = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


# runs tools/train.py with torch.load recorded: every call's weights_only
SPY = """
import json, runpy, sys, torch
calls, original = [], torch.load
def spy(*args, **kwargs):
    calls.append(kwargs.get('weights_only'))
    return original(*args, **kwargs)
torch.load = spy
out, sys.argv = sys.argv[1], sys.argv[2:]
try:
    runpy.run_path('tools/train.py', run_name='__main__')
finally:
    open(out, 'w').write(json.dumps(calls))
"""


def train(repo_root, work_dir, data_root, *extra, config=DEMO, spy=None):
    launch = [sys.executable] if spy is None else [sys.executable, '-c', SPY, str(spy)]
    cmd = [*launch, 'tools/train.py', config, '--work-dir', str(work_dir),
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
    ckpt = load_checkpoint_file(work / 'epoch_1.pth')
    assert ckpt['meta']['iter'] == 2 and ckpt['meta']['epoch'] == 1
    keys = ckpt['state_dict'].keys()
    assert any(k.startswith('teacher.module.backbone.') for k in keys)
    assert 'loss_module.center' in keys and 'rng_states' in ckpt
    assert 'optimizer' in ckpt


def assert_same_weights(a_path, b_path):
    a = load_checkpoint_file(a_path)['state_dict']
    b = load_checkpoint_file(b_path)['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_exact_and_every_load_is_weights_only(full_run, repo_root,
                                                        demo_root, tmp_path):
    work, _ = full_run
    # our checkpoints hold nothing a weights-only load refuses
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(
            str(work / name)) == [], name
    calls = tmp_path / 'torch_load_calls.json'
    log = train(repo_root, tmp_path / 'w', demo_root, '--resume',
                str(work / 'epoch_1.pth'), spy=calls)
    assert 'resumed epoch: 1, iter: 2' in log
    loads = json.loads(calls.read_text())
    assert len(loads) >= 2 and set(loads) == {True}, loads  # the check + the resume
    assert_same_weights(work / 'epoch_2.pth', tmp_path / 'w' / 'epoch_2.pth')
    # RNG states, the probe hook's best value and the message hub come back as
    # they were written (numpy and HistoryBuffer objects restored)
    a, b = (load_checkpoint_file(p) for p in (work / 'epoch_2.pth',
                                              tmp_path / 'w' / 'epoch_2.pth'))
    assert a['dense_probe']['best'] == b['dense_probe']['best']  # (value, iteration)
    assert [type(x) for x in a['rng_states'][0]['numpy']] == \
        [type(x) for x in b['rng_states'][0]['numpy']]


def test_an_old_format_checkpoint_resumes_by_trust_or_conversion(
        full_run, repo_root, demo_root, tmp_path):
    """A checkpoint as flsl_mm wrote them before (numpy objects, HistoryBuffers):
    refused with the way on, resumed with --trust-checkpoint, or converted once
    by tools/misc/upgrade_checkpoint.py; both end bitwise as the full run."""
    work, _ = full_run
    old = tmp_path / 'old_epoch_1.pth'
    torch.save(load_checkpoint_file(work / 'epoch_1.pth'), old)  # numpy pickled
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(old))
    cmd = [sys.executable, 'tools/train.py', DEMO, '--work-dir', str(tmp_path / 'r'),
           '--resume', str(old)]
    refused = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode != 0
    assert f'--resume: cannot resume from {old}: refused' in refused.stderr
    assert f'--trust-checkpoint {old}' in refused.stderr
    train(repo_root, tmp_path / 'trusted', demo_root, '--resume', str(old),
          '--trust-checkpoint', str(old))
    assert_same_weights(work / 'epoch_2.pth', tmp_path / 'trusted' / 'epoch_2.pth')
    new = tmp_path / 'new_epoch_1.pth'
    up = subprocess.run([sys.executable, 'tools/misc/upgrade_checkpoint.py', str(old),
                         str(new)], cwd=repo_root, capture_output=True, text=True)
    assert up.returncode == 2 and '--trust' in up.stderr and not new.exists()
    up = subprocess.run([sys.executable, 'tools/misc/upgrade_checkpoint.py', str(old),
                         str(new), '--trust'], cwd=repo_root, capture_output=True,
                        text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(new)) == []
    train(repo_root, tmp_path / 'converted', demo_root, '--resume', str(new))
    assert_same_weights(work / 'epoch_2.pth', tmp_path / 'converted' / 'epoch_2.pth')


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
    assert_same_weights(work / 'epoch_2.pth', tmp_path / 'epoch_2.pth')
