"""tools/analysis/learning_study.py: the seed table and a tiny end-to-end study."""
import json
import subprocess
import sys

import pytest

LEARN_CONFIG = 'configs/pretrain/flsl_vit-tiny-p16_1xb64-10e_demo-rc.py'
DINO_CONFIG = 'configs/pretrain/dino_vit-tiny-p16_1xb64-10e_demo-rc.py'


def _load_tool(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'learning_study', repo_root / 'tools/analysis/learning_study.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _entry(knn, lin=0.5, clu=0.1, box=0.7):
    return dict(probes={'knn_miou': knn, 'linear_miou': lin, 'cluster_miou': clu,
                        'bbox_knn_top1@20': box})


def test_summary_margin_in_seed_spreads(repo_root):
    tool = _load_tool(repo_root)
    results = {
        'flsl': {'0': _entry(0.40), '1': _entry(0.42), '2': _entry(0.44)},
        'random': {'0': _entry(0.30), '1': _entry(0.31), '2': _entry(0.32)},
        'gamma=0': {'0': _entry(0.30)},  # not every seed: left out of the table
    }
    table = tool.summarise(results, [0, 1, 2])
    # flsl knn: mean .42, sample std .02; random mean .31, std .01
    assert '| knn_miou | 0.4200 +- 0.0200 | 0.3100 +- 0.0100 |' in table
    # margin .11 over spread max(.02, .01) = 5.5 spreads
    assert '| knn_miou | flsl | +0.1100 | 0.0200 | +5.5 |' in table
    assert 'gamma=0' not in table
    # identical values on both sides: zero margin, no spread
    assert '| linear_miou | flsl | +0.0000 | 0.0000 | +inf |' in table
    # the students' table compares students with the same random init
    for s in ('0', '1', '2'):
        results['flsl'][s]['probes_student'] = dict(results['flsl'][s]['probes'],
                                                    knn_miou=0.5)
    student = tool.summarise(results, [0, 1, 2], 'probes_student')
    assert '| knn_miou | 0.5000 +- 0.0000 | 0.3100 +- 0.0100 |' in student
    assert '| knn_miou | flsl | +0.1900 | 0.0100 | +19.0 |' in student


def test_tiny_study_end_to_end(repo_root, tmp_path):
    cfg = tmp_path / 'tiny_learn.py'
    cfg.write_text(f"""
_base_ = [{str(repo_root / LEARN_CONFIG)!r}]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={str(tmp_path / 'data')!r},
                 demo_kwargs=dict(num_train=8, num_val=4, random_colours=True)))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, end_factor=1.0, by_epoch=True,
         begin=0, end=1, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=1)
default_hooks = dict(checkpoint=dict(interval=1))
""")
    dino = tmp_path / 'tiny_dino.py'
    dino.write_text(f"""
_base_ = [{str(repo_root / DINO_CONFIG)!r}]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={str(tmp_path / 'data')!r},
                 demo_kwargs=dict(num_train=8, num_val=4, random_colours=True)))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, end_factor=1.0, by_epoch=True,
         begin=0, end=1, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=1)
default_hooks = dict(checkpoint=dict(interval=1))
""")
    out = tmp_path / 'study'
    cmd = [sys.executable, 'tools/analysis/learning_study.py', str(cfg), '--seeds',
           '0', '1', '--variants', 'flsl', 'dino', 'random', 'random-dino',
           '--dino-config', str(dino), '--out-dir', str(out), '--student']
    # the DINO arm must train on the study's data
    bad = subprocess.run(cmd[:-5] + ['--dino-config', DINO_CONFIG, '--out-dir',
                                     str(tmp_path / 'bad')],
                         cwd=repo_root, capture_output=True, text=True)
    assert bad.returncode != 0 and 'the arms must see the same data' in bad.stderr
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'flsl seed 0 student probes: knn_miou' in proc.stdout
    assert 'dino seed 1 student probes: knn_miou' in proc.stdout
    assert 'random seed 1 random-init probes: knn_miou' in proc.stdout
    assert 'random-dino seed 0 random-init probes: knn_miou' in proc.stdout
    results = json.loads((out / 'results.json').read_text())
    assert set(results) == {'flsl', 'dino', 'random', 'random-dino'}
    table = (out / 'table.md').read_text()
    # each arm against the random init of its own config
    assert '| knn_miou | dino vs random-dino |' in table
    assert '| knn_miou | flsl |' in table
    assert '| knn_miou | random-dino |' not in table  # baselines are not margins
    dino_entry = results['dino']['0']
    assert 'mon_teacher_init_weight' in dino_entry['monitors']
    assert 'mon_token_spread' not in dino_entry['monitors']
    results.pop('dino')
    results.pop('random-dino')
    for variant in results:
        assert set(results[variant]) == {'0', '1'}
        for entry in results[variant].values():
            assert 0 <= entry['probes']['knn_miou'] <= 1
    flsl = results['flsl']['0']
    assert 0 < flsl['monitors']['mon_target_entropy'] <= 1
    assert flsl['seconds']['pretrain'] > 0
    # student and teacher differ after training (the EMA lags)
    assert flsl['probes_student'] != flsl['probes']
    # the two seeds train different models
    assert results['flsl']['0']['probes'] != results['flsl']['1']['probes']
    table = (out / 'table.md').read_text()
    assert '| knn_miou | flsl |' in table
    assert '### Teachers' in table and '### Students' in table
    assert (out / 'curves_flsl.png').stat().st_size > 1000
    # the probe curves come from the study configs' DenseProbeHook: the start
    # and the end (iteration 2) of each run; the last point is the final teacher
    curve = flsl['probe_curve']
    assert [p[0] for p in curve['knn_miou']] == [0, 2]
    assert set(curve) == {'knn_miou', 'cluster_miou'}
    assert curve['knn_miou'][-1][1] == flsl['probes']['knn_miou']
    assert (out / 'probe_curves.png').stat().st_size > 1000
    # a second call keeps what is done and trains nothing
    again = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count('done before, kept') == 8
    assert 'pretrain ...' not in again.stdout and 'probes' not in again.stdout
    # other settings into the same folder are refused, nothing changed
    before = (out / 'results.json').read_bytes()
    other = subprocess.run(cmd + ['--cfg-options', 'model.loss.gamma=1.0'],
                           cwd=repo_root, capture_output=True, text=True)
    assert other.returncode != 0 and 'choose another --out-dir' in other.stderr
    assert (out / 'results.json').read_bytes() == before


def test_data_of_other_settings_is_refused(repo_root, tmp_path):
    from flsl_mm.datasets import make_demo_data
    data = make_demo_data(tmp_path / 'data', num_train=2, num_val=1)  # not random
    cfg = tmp_path / 'c.py'
    cfg.write_text(f"""
_base_ = [{str(repo_root / LEARN_CONFIG)!r}]
train_dataloader = dict(dataset=dict(data_root={str(data)!r}))
""")
    proc = subprocess.run([sys.executable, 'tools/analysis/learning_study.py', str(cfg),
                           '--out-dir', str(tmp_path / 'o')], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'generated with other settings' in proc.stderr
    assert 'random_colours=False (asked for True)' in proc.stderr
    assert not (tmp_path / 'o' / 'results.json').exists()


def test_device_flags_checked_before_any_work(repo_root, tmp_path):
    import torch
    base = [sys.executable, 'tools/analysis/learning_study.py', LEARN_CONFIG,
            '--out-dir', str(tmp_path / 'o')]
    proc = subprocess.run(base + ['--amp'], cwd=repo_root, capture_output=True,
                          text=True)
    assert proc.returncode != 0 and '--amp needs --device cuda' in proc.stderr
    if not torch.cuda.is_available():
        proc = subprocess.run(base + ['--device', 'cuda'], cwd=repo_root,
                              capture_output=True, text=True)
        assert proc.returncode != 0 and 'no CUDA GPU' in proc.stderr
    assert not (tmp_path / 'o').exists()
