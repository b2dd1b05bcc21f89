"""The demo pretraining on a folder with bad files (tools/train.py, as a user
runs it): the bad ones are replaced, named in the log and in bad_samples.jsonl,
the odd good ones (a PNG named .JPEG, a CMYK JPEG) trained on; a resume from a
checkpoint written after the first bad sample equals the run that never
stopped; ``on_bad_sample='raise'`` stops naming the file; past the cap the run
stops with the list; two processes replace alike and write the list once; a
scan's skip list leaves the files out, and a resume with another list is
refused."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from flsl_mm.checkpoints import load_checkpoint_file
from test_dist_train import dist_train, scalars

DEMO = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def options(data_root, *extra, batch=8):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            'train_dataloader.dataset.split=bad', f'train_dataloader.batch_size={batch}',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_cfg.max_epochs=2', 'train_cfg.max_bad_samples=4',
            'default_hooks.checkpoint.interval=1', *extra]


def train(repo_root, work_dir, data_root, *extra, ok=True, resume=None, env=None,
          config=DEMO):
    cmd = [sys.executable, 'tools/train.py', str(config), '--work-dir', str(work_dir),
           *(['--resume', str(resume)] if resume else []), *options(data_root, *extra)]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True,
                          timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-4000:]
    return out


def records(work_dir):
    return [json.loads(line) for line in
            (work_dir / 'bad_samples.jsonl').read_text().splitlines()]


def weights(path):
    return load_checkpoint_file(path)['state_dict']


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope='module')
def full_run(repo_root, bad_image_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('bad_full')
    # 22 images / 8 = 3 iterations an epoch; a checkpoint every 2 iterations
    log = train(repo_root, work, bad_image_root,
                'default_hooks.checkpoint.interval_iters=2')
    return work, log


def test_bad_files_are_replaced_named_and_listed(full_run, bad_image_names):
    work, log = full_run
    listed = records(work)
    names = {r['path'].rsplit('/', 1)[-1] for r in listed}
    assert names == set(bad_image_names)  # exactly the bad ones, odd good ones kept
    for epoch in (1, 2):  # each met in each epoch (and again where a replacement
        # drawn for another bad one was bad too)
        assert {r['path'].rsplit('/', 1)[-1] for r in listed
                if r['epoch'] == epoch} == set(bad_image_names)
    for r in listed:
        assert r.keys() == {'path', 'reason', 'index', 'replacement', 'epoch',
                            'iteration', 'rank'}
        assert r['replacement'].rsplit('/', 1)[-1] not in bad_image_names
        assert f'bad sample replaced (epoch {r["epoch"]}, iteration ' \
               f'{r["iteration"]}, rank 0): {r["path"]}: {r["reason"]}' in log
    reasons = {r['path'].rsplit('/', 1)[-1]: r['reason'] for r in listed}
    assert reasons['bad_truncated.jpg'].startswith('truncated JPEG')
    assert reasons['bad_empty.jpg'] == 'the file is empty (0 bytes)'
    assert reasons['bad_tiny.png'] == 'the image is 1x1 px, smaller than 8 px a side'
    assert reasons['bad_text.jpg'].startswith('cannot decode the image')
    logged = scalars(work)
    assert logged[6]['bad_samples'] == len(listed)  # the log line's count
    assert (work / 'epoch_2.pth').is_file()


def test_resume_after_the_first_bad_sample_is_exact(repo_root, full_run,
                                                    bad_image_root, tmp_path):
    work, _ = full_run
    first = min(r['iteration'] for r in records(work))
    assert first <= 2  # iter_2.pth is written after the first bad sample
    plugins = repo_root / 'tests' / 'data' / 'plugins'
    env = dict(os.environ, PYTHONPATH=f'{plugins}{os.pathsep}{repo_root}',
               FLSL_MM_TEST_STOP_AFTER='iter_2.pth')
    config = tmp_path / 'stop_after_checkpoint.py'  # custom_imports act in a file
    config.write_text(f"_base_ = ['{repo_root}/{DEMO}']\ncustom_imports = dict("
                      "imports=['flsl_mm', 'stop_after_checkpoint'], "
                      "allow_failed_imports=False)\n")
    log = train(repo_root, tmp_path, bad_image_root,
                'default_hooks.checkpoint.interval_iters=2', ok=False, env=env,
                config=config)
    assert 'test stop after writing iter_2.pth' in log
    assert records(tmp_path) == [
        r for r in records(work) if r['iteration'] <= 2]
    log = train(repo_root, tmp_path, bad_image_root,
                'default_hooks.checkpoint.interval_iters=2',
                resume=tmp_path / 'iter_2.pth')
    assert 'resuming epoch 1 at batch 3 of 3' in log
    assert_same_weights(work / 'epoch_2.pth', tmp_path / 'epoch_2.pth')
    assert records(tmp_path) == records(work)


def test_raise_policy_stops_naming_the_file(repo_root, bad_image_root, tmp_path):
    log = train(repo_root, tmp_path, bad_image_root, 'train_cfg.on_bad_sample=raise',
                ok=False)
    assert 'BadSampleError' in log
    assert any(f'/bad/images/{name}: ' in log for name in
               ('bad_truncated.jpg', 'bad_empty.jpg', 'bad_text.jpg', 'bad_tiny.png'))


def test_past_the_cap_the_run_stops_with_the_list(repo_root, bad_image_root, tmp_path):
    log = train(repo_root, tmp_path, bad_image_root, 'train_cfg.max_bad_samples=1',
                ok=False)
    assert 'TooManyBadSamples' in log and 'more than max_bad_samples=1' in log
    listed = records(tmp_path)
    paths = list(dict.fromkeys(r['path'] for r in listed))
    assert len(paths) >= 2
    tail = log[log.index('more than max_bad_samples=1'):]
    for path in paths:
        assert f'  {path}: ' in tail
    assert not (tmp_path / 'epoch_1.pth').exists()


def test_two_processes_replace_alike_and_write_once(repo_root, bad_image_root,
                                                    tmp_path):
    _, out, _ = dist_train(repo_root, DEMO, tmp_path,
                           *options(bad_image_root, batch=4))
    listed = records(tmp_path)
    assert {r['rank'] for r in listed} == {0, 1}  # both ranks met bad files
    assert {r['path'].rsplit('/', 1)[-1] for r in listed} == {
        'bad_truncated.jpg', 'bad_empty.jpg', 'bad_text.jpg', 'bad_tiny.png'}
    for r in listed:  # each logged once, by rank 0
        line = (f'bad sample replaced (epoch {r["epoch"]}, iteration '
                f'{r["iteration"]}, rank {r["rank"]}): {r["path"]}')
        assert out.count(line) == 1, line
    # the replacement is a function of the index and the seed: every occurrence
    # of a file in the same epoch position gets the same one on either rank
    again = {}
    for r in listed:
        again.setdefault((r['epoch'], r['index']), set()).add(r['replacement'])
    assert all(len(v) == 1 for v in again.values())


def test_skip_list_leaves_the_files_out_and_guards_the_resume(
        repo_root, full_run, bad_image_root, tmp_path):
    work, _ = full_run
    skip = tmp_path / 'skip.jsonl'
    shutil.copy(work / 'bad_samples.jsonl', skip)
    run = tmp_path / 'run'
    log = train(repo_root, run, bad_image_root, f'train_cfg.skip_list={skip}',
                'train_cfg.max_bad_samples=0')  # none may be met
    assert 'skip list' in log and '4 of the dataset\'s 22 samples left out' in log
    assert records(run) == []
    log = train(repo_root, run, bad_image_root, ok=False, resume=run / 'epoch_1.pth')
    assert 'cannot resume: the checkpoint\'s run left out skip list ' in log
    assert 'this run no skip list' in log
