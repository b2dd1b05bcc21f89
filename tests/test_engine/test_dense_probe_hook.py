"""DenseProbeHook: the probe of tools/analysis/dense_probe.py during training, with
no effect on the training, and a bad probe set refused before the first iteration."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flsl_mm.checkpoints import load_checkpoint_file

CONFIG = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def train(repo_root, work, demo_root, *options):
    cmd = [sys.executable, 'tools/train.py', CONFIG, '--work-dir', str(work),
           '--cfg-options', f'train_dataloader.dataset.data_root={demo_root}',
           'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
           'default_hooks.checkpoint.interval=1', *options]
    return subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True,
                          timeout=600)


def rows(work):
    files = sorted(work.glob('*/vis_data/scalars.json'))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


@pytest.fixture(scope='module')
def runs(repo_root, demo_root, tmp_path_factory):
    """The demo pretraining (4 iterations) with the hook probing teacher and
    student every 2 iterations, and the same run without the hook."""
    base = tmp_path_factory.mktemp('probe_hook')
    with_hook = train(repo_root, base / 'hook', demo_root,
                      'custom_hooks.0.by_epoch=False', 'custom_hooks.0.interval=2',
                      'custom_hooks.0.student=True')
    assert with_hook.returncode == 0, with_hook.stderr[-4000:]
    without = train(repo_root, base / 'plain', demo_root, 'custom_hooks=[]')
    assert without.returncode == 0, without.stderr[-4000:]
    return base, with_hook.stdout + with_hook.stderr, without.stdout + without.stderr


def test_probes_are_logged_once_each_with_best_and_cost(runs):
    base, out, plain = runs
    probe_rows = [r for r in rows(base / 'hook') if 'probe/knn_miou' in r]
    # at the start, every 2 iterations; the end is iteration 4 already probed
    assert [r['iter'] for r in probe_rows] == [0, 2, 4]
    for r in probe_rows:
        assert {'probe/linear_miou', 'probe/cluster_miou', 'probe/student_knn_miou',
                'probe/best_knn_miou', 'probe/seconds'} <= set(r)
        assert 0 < r['probe/knn_miou'] <= 1
    best = max(r['probe/knn_miou'] for r in probe_rows)
    assert probe_rows[-1]['probe/best_knn_miou'] == best
    assert out.count('dense probe at iteration') == 3
    assert 'all probes' in out and '% of the' in out
    assert 'DenseProbeHook: demo data' in out and 'read and checked' in out
    assert 'dense probe' not in plain
    ckpt = load_checkpoint_file(base / 'hook' / 'epoch_1.pth')
    assert ckpt['dense_probe']['best'][0] == best
    assert ckpt['dense_probe']['last_step'] == 4


def test_training_is_bitwise_the_same_with_and_without_the_hook(runs):
    base, _, _ = runs
    a = load_checkpoint_file(base / 'hook' / 'epoch_1.pth')
    b = load_checkpoint_file(base / 'plain' / 'epoch_1.pth')
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    for i in sa:
        for name in ('exp_avg', 'exp_avg_sq'):
            assert torch.equal(sa[i][name], sb[i][name]), (i, name)
    # every random stream continues where it would have without the probes
    ra, rb = a['rng_states'][0], b['rng_states'][0]
    assert torch.equal(ra['torch'], rb['torch'])
    assert ra['python'] == rb['python']
    assert all(np.array_equal(x, y) for x, y in zip(ra['numpy'], rb['numpy']))
    la = [r for r in rows(base / 'hook') if 'loss' in r]
    lb = [r for r in rows(base / 'plain') if 'loss' in r]
    assert [r['loss'] for r in la] == [r['loss'] for r in lb] and len(la) == 4


@pytest.mark.parametrize('student', [False, True])
def test_hook_equals_the_dense_probe_tool_on_the_checkpoint(runs, repo_root,
                                                            demo_root, student):
    base, _, _ = runs
    out = base / f'tool_{student}.json'
    cmd = [sys.executable, 'tools/analysis/dense_probe.py', CONFIG,
           str(base / 'hook' / 'epoch_1.pth'), '--data-root', str(demo_root),
           '--out', str(out)] + (['--student'] if student else [])
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tool = json.loads(out.read_text())
    last = [r for r in rows(base / 'hook') if 'probe/knn_miou' in r][-1]
    prefix = 'probe/student_' if student else 'probe/'
    for key in ('knn_miou', 'knn_acc', 'linear_miou', 'linear_acc', 'cluster_miou'):
        assert last[prefix + key] == tool[key], key


def test_a_bad_probe_set_stops_the_run_before_the_first_iteration(
        repo_root, demo_root, tmp_path):
    """A missing folder, and a class id out of range: tools/train.py stops before
    its first iteration, names the path, writes no checkpoint."""
    from PIL import Image
    root = tmp_path / 'ade'
    for split in ('training', 'validation'):
        for i in range(2):
            (root / 'images' / split).mkdir(parents=True, exist_ok=True)
            (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
            Image.new('RGB', (48, 32)).save(root / 'images' / split / f'{i}.jpg')
            Image.fromarray(np.full((32, 48), 3 + 200 * (split == 'validation'),
                                    np.uint8)).save(
                root / 'annotations' / split / f'{i}.png')
    missing = tmp_path / 'ADEChallengeData2016'
    cases = [(missing, f'{missing}: ADE20K data_root folder not found'),
             (root, f'{root}/annotations/validation/0.png: class id 203 out of range')]
    for n, (data_root, message) in enumerate(cases):
        proc = train(repo_root, tmp_path / f'w{n}', demo_root,
                     'custom_hooks.0.probe_set.type=ade20k',
                     f'custom_hooks.0.probe_set.data_root={data_root}')
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in out
        assert 'Epoch(train)' not in out
        assert not list((tmp_path / f'w{n}').glob('*.pth'))


def test_hook_arguments_are_checked():
    from flsl_mm.engine import DenseProbeHook
    with pytest.raises(ValueError, match='probe_set must be a dict with a type'):
        DenseProbeHook(probe_set='data/ade')
    with pytest.raises(ValueError, match='interval must be an int >= 1'):
        DenseProbeHook(probe_set=dict(type='demo'), interval=0)
    with pytest.raises(ValueError, match=r"probes \['knn', 'svm'\]"):
        DenseProbeHook(probe_set=dict(type='demo'), probes=('knn', 'svm'))
    assert DenseProbeHook(dict(type='demo'), probes=('cluster',)).best_key == \
        'cluster_miou'


def test_autocast_follows_the_run(demo_root):
    """The probe extracts tokens in the run's autocast dtype (bf16 here, on the
    CPU); the tokens are float32 and the k-NN mIoU close to full precision's."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    from flsl_mm.analysis import load_backbone
    from flsl_mm.analysis.probe_runner import run_probes
    from flsl_mm.analysis.probe_sets import build_probe_set
    from flsl_mm.engine import DenseProbeHook
    hook = DenseProbeHook(dict(type='demo'))
    cpu = torch.device('cpu')
    amp = SimpleNamespace(optim_wrapper=AmpOptimWrapper.__new__(AmpOptimWrapper))
    amp.optim_wrapper.cast_dtype = torch.bfloat16
    assert hook._autocast_dtype(amp, cpu) is torch.bfloat16
    amp.optim_wrapper.cast_dtype = None
    assert hook._autocast_dtype(amp, torch.device('cuda')) is torch.float16
    plain = SimpleNamespace(optim_wrapper=OptimWrapper.__new__(OptimWrapper))
    assert hook._autocast_dtype(plain, cpu) is None
    assert DenseProbeHook(dict(type='demo'), amp=True)._autocast_dtype(
        plain, cpu) is torch.bfloat16
    backbone = load_backbone(CONFIG, random_init=True)
    train_split, val_split = build_probe_set(
        dict(type='demo', data_root=str(demo_root))).load(16)
    full = run_probes(backbone, train_split, val_split, 6, probes=('knn',),
                      progress=False)
    half = run_probes(backbone, train_split, val_split, 6, probes=('knn',),
                      autocast_dtype=torch.bfloat16, progress=False)
    assert abs(full['knn_miou'] - half['knn_miou']) < 0.05


def test_a_resumed_run_keeps_the_best_and_does_not_probe_its_start_again():
    from flsl_mm.engine import DenseProbeHook
    hook = DenseProbeHook(dict(type='demo'))
    saved = {}
    hook.best, hook.last_step, hook.probe_seconds = (0.7, 40), 40, 12.0
    hook.before_save_checkpoint(None, saved)
    resumed = DenseProbeHook(dict(type='demo'))
    resumed._probe = lambda runner, step: pytest.fail('probed the start again')
    resumed.after_load_checkpoint(None, saved)
    resumed.before_train(SimpleNamespace(iter=40))
    assert (resumed.best, resumed.last_step, resumed.probe_seconds) == \
        ((0.7, 40), 40, 12.0)
    fresh = DenseProbeHook(dict(type='demo'))  # load_from: a new run, no history
    probed = []
    fresh._probe = lambda runner, step: probed.append(step)
    fresh.after_load_checkpoint(None, saved)
    fresh.before_train(SimpleNamespace(iter=0))
    assert fresh.best is None and probed == [0]


def test_a_label_of_the_wrong_size_is_refused_in_before_run(repo_root, tmp_path):
    """before_run (before weights are initialised, before iteration 1) reads the
    whole set: a label PNG of another size than its image is named."""
    import logging

    from mmengine.config import Config
    from PIL import Image

    from flsl_mm.analysis.probe_sets import ProbeSetError
    from flsl_mm.engine import DenseProbeHook
    root = tmp_path / 'ade'
    for split in ('training', 'validation'):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        Image.new('RGB', (48, 32)).save(root / 'images' / split / 'a.jpg')
        Image.new('L', (48, 32 if split == 'training' else 40)).save(
            root / 'annotations' / split / 'a.png')
    runner = SimpleNamespace(cfg=Config.fromfile(str(repo_root / CONFIG)),
                             logger=logging.getLogger('probe-test'))
    hook = DenseProbeHook(dict(type='ade20k', data_root=str(root)))
    bad = root / 'annotations' / 'validation' / 'a.png'
    with pytest.raises(ProbeSetError, match=f"{bad}: label size 48x40 differs from "
                       "its image's 48x32"):
        hook.before_run(runner)
    with pytest.raises(ValueError, match='probes bbox needs COCO boxes'):
        DenseProbeHook(dict(type='ade20k', data_root=str(root)),
                       probes=('bbox',)).before_run(runner)


class _Logger:
    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)

    info = warning


def test_a_failed_probe_is_a_warning_and_the_backbone_leaves_the_device(monkeypatch):
    """During training a probe that fails (out of memory, a bad image) is logged
    and training goes on; on_error='raise' stops it. The probe copy of the backbone
    goes back to the CPU after every probe, failed or not."""
    import flsl_mm.analysis.probe_runner as probe_runner
    import flsl_mm.analysis.tokens as tokens
    from flsl_mm.engine import DenseProbeHook
    moved = []

    class Backbone:
        def to(self, device):
            moved.append(str(device))
            return self

    def out_of_memory(*args, **kwargs):
        raise RuntimeError('CUDA out of memory (stand-in)')
    monkeypatch.setattr(probe_runner, 'collect', out_of_memory)
    monkeypatch.setattr(tokens, 'load_backbone_state', lambda *a, **k: 'flsl_mm')
    runner = SimpleNamespace(model=torch.nn.Linear(2, 2), optim_wrapper=None,
                             logger=_Logger(), hooks=[])
    hook = DenseProbeHook(dict(type='demo'))
    hook._backbone, hook._splits = Backbone(), (None, None)
    hook._probe(runner, 8)
    # to the model's device (the CPU here) for the tokens, and back to the CPU
    assert hook.failures == 1 and hook.last_step is None and moved == ['cpu'] * 2
    assert 'the probe at iteration 8 failed on rank 0: RuntimeError: CUDA out of ' \
        'memory (stand-in); training goes on' in runner.logger.warnings[0]
    strict = DenseProbeHook(dict(type='demo'), on_error='raise')
    strict._backbone, strict._splits = Backbone(), (None, None)
    with pytest.raises(RuntimeError, match='out of memory'):
        strict._probe(runner, 8)
    assert moved == ['cpu'] * 4
    with pytest.raises(ValueError, match="on_error must be 'warn' or 'raise'"):
        DenseProbeHook(dict(type='demo'), on_error='ignore')
    with pytest.raises(ValueError, match='wait_hours must be > 0'):
        DenseProbeHook(dict(type='demo'), wait_hours=0)


TWO_RANKS = r'''
import json, logging, sys
from types import SimpleNamespace

import torch
import torch.distributed as dist

repo, demo, bad_root, out = sys.argv[1:5]
sys.path.insert(0, repo)
import flsl_mm  # noqa: F401
import flsl_mm.analysis.probe_runner as probe_runner
import flsl_mm.analysis.tokens as tokens
from flsl_mm.engine import DenseProbeHook
from mmengine.config import Config

dist.init_process_group('gloo')
rank = dist.get_rank()
cfg = Config.fromfile(f'{repo}/configs/pretrain/flsl_vit-tiny-p16_demo.py')
cfg.train_dataloader.dataset.data_root = demo


class Logger:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)

    warning = info


rows, embedded = [], []
runner = SimpleNamespace(
    cfg=cfg, model=torch.nn.Linear(2, 2), optim_wrapper=None, logger=Logger(),
    hooks=[], message_hub=SimpleNamespace(update_scalar=lambda key, value: None),
    visualizer=SimpleNamespace(add_scalars=lambda row, step, file_path: rows.append(row)))
# the probe copy keeps its initialisation (seed 0): the model here is a stand-in
tokens.load_backbone_state = lambda *args, **kwargs: 'flsl_mm'
collect, fail = probe_runner.collect, []


def counting_collect(backbone, split, *args, **kwargs):
    if fail:
        raise RuntimeError('CUDA out of memory (stand-in)')
    embedded.append(len(split.images))
    return collect(backbone, split, *args, **kwargs)


probe_runner.collect = counting_collect
torch.manual_seed(0)
hook = DenseProbeHook(dict(type='demo'), probes=('knn', 'cluster', 'bbox'))
hook.before_run(runner)
hook._probe(runner, 2)
fail.extend([True] if rank == 1 else [])  # rank 1 runs out of memory
hook._probe(runner, 4)
try:
    DenseProbeHook(dict(type='ade20k', data_root=bad_root)).before_run(runner)
    refused = None
except Exception as exc:  # rank 1 reads the bad label, rank 0 hears of it
    refused = f'{type(exc).__name__}: {exc}'
with open(f'{out}/rank{rank}.json', 'w') as f:
    json.dump(dict(rows=rows, embedded=embedded, log=runner.logger.lines,
                   failures=hook.failures, refused=refused), f)
from flsl_mm.utils.dist import shutdown_distributed
shutdown_distributed()  # barrier first: a rank leaving early aborts the other
'''


def test_two_ranks_each_embed_their_part_and_get_one_processs_numbers(
        repo_root, demo_root, tmp_path):
    """2 processes (gloo): each rank reads and embeds half of the probe set
    (8 train + 4 val demo images), rank 0 scores, and both ranks log the numbers
    of the whole set embedded in one process, bitwise. Rank 1 out of memory at
    the next probe: a warning naming rank 1 on both ranks, training goes on. A
    bad label in rank 1's part of a set: both ranks refuse it, naming the file."""
    from PIL import Image

    from flsl_mm.analysis import load_backbone
    from flsl_mm.analysis.probe_runner import run_probes
    from flsl_mm.analysis.probe_sets import build_probe_set
    bad_root = tmp_path / 'ade'
    for split, sizes in (('training', [32, 32]), ('validation', [32, 40])):
        (bad_root / 'images' / split).mkdir(parents=True)
        (bad_root / 'annotations' / split).mkdir(parents=True)
        for i, height in enumerate(sizes):  # validation b.png: rank 1's, wrong size
            name = 'ab'[i]
            Image.new('RGB', (48, 32)).save(bad_root / 'images' / split / f'{name}.jpg')
            Image.new('L', (48, height)).save(
                bad_root / 'annotations' / split / f'{name}.png')
    script = tmp_path / 'two_ranks.py'
    script.write_text(TWO_RANKS)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(_free_port()), str(script), str(repo_root),
           str(demo_root), str(bad_root), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1)]
    for r, result in enumerate(ranks):
        # its half of train, then of val, at each probe (rank 1 fails the second)
        assert result['embedded'] == [8, 4] * (2 - r), r
        assert 'tokens embedded on 2 ranks (train/val images per rank: 8/4+8/4)' in \
            result['log'][0]
        assert len(result['rows']) == 1 and result['failures'] == 1
        assert any('tokens on 2 ranks' in line for line in result['log'])
        assert any('the probe at iteration 4 failed on rank 1: RuntimeError: CUDA '
                   'out of memory (stand-in); training goes on' in line
                   for line in result['log']), result['log']
    same = [{k: v for k, v in result['rows'][0].items() if k != 'probe/seconds'}
            for result in ranks]  # the seconds are each rank's own
    assert same[0] == same[1]
    bad = bad_root / 'annotations' / 'validation' / 'b.png'
    assert ranks[1]['refused'].startswith(f'ProbeSetError: {bad}: label size 48x40')
    assert ranks[0]['refused'].startswith(
        f'RuntimeError: DenseProbeHook: the probe set was refused on rank 1: '
        f'ProbeSetError: {bad}: label size 48x40')
    backbone = load_backbone(str(repo_root / CONFIG), random_init=True, seed=0)
    probe_set = build_probe_set(dict(type='demo', data_root=str(demo_root)))
    one = run_probes(backbone, *probe_set.load(16), probe_set.num_classes,
                     probes=('knn', 'cluster', 'bbox'), progress=False)
    logged = ranks[0]['rows'][0]
    assert logged['iter'] == 2 and len(one) >= 7
    for key, value in one.items():
        assert logged[f'probe/{key}'] == value, key


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
