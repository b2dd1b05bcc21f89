"""Fine-tuning as a cluster stops it: SIGTERM to the whole job (loader workers of
the training *and* validation loaders included) right after the first
validation of the Mask R-CNN and Semantic FPN demos: a checkpoint at the next
iteration, exit status EXIT_PREEMPTED (not 0: the run did not finish), no
worker crash; ``--resume`` then finishes with status 0. And a stop that arrives
during a validation ends it at its next iteration, before anything else runs."""
import os
import signal
import subprocess
import sys
import time

import pytest

from flsl_mm.engine.preemption import EXIT_PREEMPTED

DET = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'
SEG = 'configs/seg_ade20k/semfpn_flsl-vit-tiny-p16_demo.py'


def det_options(root):
    return [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'val_evaluator.ann_file={root}/annotations/instances_val.json',
            'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2',
            'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True',
            'val_dataloader.num_workers=1', 'val_dataloader.persistent_workers=True',
            'train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=2',
            'train_cfg.max_epochs=2', 'train_cfg.val_interval=1',
            'default_hooks.logger.interval=1']


def seg_options(root):
    return [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2',
            'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True',
            'val_dataloader.num_workers=1', 'val_dataloader.persistent_workers=True',
            'train_cfg.max_iters=8', 'train_cfg.val_interval=2',
            'default_hooks.checkpoint.interval=8', 'param_scheduler.0.end=2',
            'param_scheduler.1.begin=2', 'param_scheduler.1.end=8',
            'default_hooks.logger.interval=1', 'log_processor.window_size=1']


JOBS = {'mask_rcnn': (DET, det_options, 'coco/bbox_mAP: '),
        'semantic_fpn': (SEG, seg_options, 'mIoU: ')}


def launch(repo_root, config, work, options, *extra):
    log = work.parent / f'{work.name}_{time.monotonic_ns()}.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            [sys.executable, 'tools/train.py', config, '--work-dir', str(work), *extra,
             '--cfg-options', *options], cwd=repo_root, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1'))
    return proc, log


def wait_for(text, proc, log, timeout=600):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in log.read_text():
            return
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.01)
    raise AssertionError(f'timed out waiting for {text!r}')


@pytest.mark.parametrize('job', list(JOBS))
def test_sigterm_after_the_first_validation_checkpoints_and_resumes(
        job, repo_root, demo_root, tmp_path):
    config, options, metric = JOBS[job]
    work = tmp_path / 'work'
    proc, log = launch(repo_root, config, work, options(demo_root))
    wait_for(metric, proc, log)  # the first validation's metrics are logged
    os.killpg(proc.pid, signal.SIGTERM)  # every process of the job
    rc = proc.wait(timeout=600)
    text = log.read_text()
    assert rc == EXIT_PREEMPTED, text[-3000:]
    assert 'training stopped by SIGTERM after iteration' in text, text[-3000:]
    assert 'is killed by signal' not in text and 'Traceback' not in text
    saved = sorted(work.glob('iter_*.pth'))
    assert len(saved) == 1, sorted(p.name for p in work.iterdir())
    assert (work / 'last_checkpoint').read_text() == str(saved[0])
    proc, log = launch(repo_root, config, work, options(demo_root), '--resume')
    rc = proc.wait(timeout=900)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    step = int(saved[0].stem.split('_')[1])  # iter_N.pth: N iterations done
    assert f', iter: {step}' in text and 'resumed epoch: ' in text, text[-3000:]


def test_a_stop_during_validation_ends_it_at_the_next_iteration(repo_root, demo_root,
                                                                tmp_path):
    """Mask R-CNN, SIGTERM while epoch 1 is being validated (8 images): the
    validation stops at its next iteration, epoch 1's checkpoint is written (the
    config saves only at the end), nothing else runs; --resume starts epoch 2."""
    work = tmp_path / 'work'
    options = det_options(demo_root) + ['val_dataloader.dataset.indices=8',
                                        'val_dataloader.batch_size=1']
    proc, log = launch(repo_root, DET, work, options)
    wait_for('Epoch(val) [1][1/8]', proc, log)
    os.killpg(proc.pid, signal.SIGTERM)
    rc = proc.wait(timeout=600)
    text = log.read_text()
    assert rc == EXIT_PREEMPTED, text[-3000:]
    assert 'Epoch(val) [1][8/8]' not in text and 'coco/bbox_mAP' not in text
    assert 'Saving checkpoint epoch_1.pth (stop signal)' in text
    assert 'training stopped by SIGTERM during the validation of epoch 1 (at its ' \
        'batch' in text, text[-3000:]
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    proc, log = launch(repo_root, DET, work, options, '--resume')
    rc = proc.wait(timeout=900)
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert 'resumed epoch: 1, iter: 4' in text, text[-3000:]
