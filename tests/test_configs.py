"""Every config loads; the published pretraining settings and the schedules
(lr warm-up + cosine, weight-decay cosine 0.04 -> 0.4, none on 1-D params)."""
import math
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, DefaultScope
from mmpretrain.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts)


@pytest.mark.parametrize('path', CONFIGS)
def test_config_loads(path):
    cfg = Config.fromfile(str(ROOT / path))
    assert cfg.default_scope in ('mmpretrain', 'mmdet', 'mmseg')
    assert 'flsl_mm' in cfg.custom_imports['imports']


def test_published_pretraining_settings():
    cfg = Config.fromfile(str(ROOT / 'configs/pretrain/'
                              'flsl_vit-small-p16_8xb64-300e_in1k.py'))
    assert cfg.model.head.out_channels == 4096
    assert cfg.model.backbone.arch == 'small' and cfg.model.backbone.drop_path_rate == 0.1
    assert cfg.model.loss.upsilon == 0.03 and cfg.model.loss.eta == 1.0
    assert cfg.model.loss.gamma == 5.0 and cfg.model.loss.student_temp == 0.1
    assert cfg.model.beta_sa == pytest.approx(0.1 / math.sqrt(384))
    assert cfg.model.beta_ca == pytest.approx(0.2 / math.sqrt(384))
    assert cfg.model.teacher_momentum == 0.004 and cfg.model.teacher_end_momentum == 0
    assert cfg.train_dataloader.batch_size == 64 and cfg.train_cfg.max_epochs == 300
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(5e-4 * 512 / 256)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    # made for a GPU that is never waited for (docs/pretraining.md): fused AdamW
    # (fp16's scaler reads nothing), full batches (one compiled shape), the
    # query indices made by the loader, mmpretrain's preprocessor without syncs
    assert cfg.optim_wrapper.optimizer.fused is True
    assert cfg.train_dataloader.drop_last is True and cfg.train_dataloader.pin_memory
    assert cfg.train_dataloader.collate_fn == dict(type='flsl_collate')
    assert cfg.model.data_preprocessor.type == 'MultiViewDataPreprocessor'
    view = cfg.train_dataloader.dataset.pipeline[1]
    assert (view.global_size, view.local_size, view.num_local_crops) == (224, 96, 2)
    assert tuple(view.local_scale) == (0.05, 0.4)
    assert cfg.model.loss.teacher_temp == 0.07
    assert cfg.model.loss.warmup_teacher_temp == 0.04
    assert cfg.model.loss.warmup_teacher_temp_epochs == 30
    hooks = {h.type: h for h in cfg.default_hooks.values()}
    assert 'FLSLScheduleHook' in hooks and 'FLSLTeacherUpdateHook' in hooks
    assert hooks['PerParamGradClipHook'].max_norm == 3.0
    assert hooks['FreezeLastLayerHook'].freeze_last_layer == 1
    p8 = Config.fromfile(str(ROOT / 'configs/pretrain/'
                             'flsl_vit-small-p8_8xb64-300e_in1k.py'))
    assert p8.model.backbone.patch_size == 8
    assert p8.train_dataloader.dataset.pipeline[1].patch_size == 8


def test_lr_and_weight_decay_schedules():
    cfg = Config.fromfile(str(ROOT / 'configs/pretrain/flsl_vit-tiny-p16_demo.py'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    epoch_len, epochs = 4, cfg.train_cfg.max_epochs
    schedulers = [PARAM_SCHEDULERS.build(
        s, default_args=dict(optimizer=wrapper, epoch_length=epoch_len))
        for s in cfg.param_scheduler]
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g['params'][0])]: g for g in wrapper.optimizer.param_groups}
    assert not any(n.startswith('teacher.') for n in groups)  # EMA only
    weight = groups['backbone.blocks.0.attn.qkv.weight']
    bias = groups['backbone.blocks.0.attn.qkv.bias']
    norm = groups['backbone.norm.weight']
    base = cfg.optim_wrapper.optimizer.lr
    lrs, wds = [], []
    for _ in range(epochs * epoch_len):
        lrs.append(weight['lr'])
        wds.append(weight['weight_decay'])
        assert bias['weight_decay'] == 0 and norm['weight_decay'] == 0
        for s in schedulers:
            s.step()
    warm = 2 * epoch_len  # warm-up epochs of the demo config
    # warm-up = the reference's np.linspace(0, base, warm): reaches base at its
    # last iteration, then the cosine starts from base
    assert lrs[0] < base * 1e-6
    for t in range(warm):
        assert lrs[t] == pytest.approx(base * t / (warm - 1), rel=1e-6, abs=1e-12)
    assert lrs[warm] == pytest.approx(base, rel=1e-6)
    assert lrs[-1] == pytest.approx(1e-6 + (base - 1e-6) * 0.5 *
                                    (1 + math.cos(math.pi * (len(lrs) - 1 - warm) /
                                                  (len(lrs) - warm))), rel=1e-3)
    assert wds[0] == pytest.approx(0.04)
    mid = len(wds) // 2
    assert wds[mid] == pytest.approx(0.22, rel=1e-3)  # cosine midpoint
    assert wds[-1] == pytest.approx(0.4, rel=1e-2)
    assert all(a <= b + 1e-12 for a, b in zip(wds, wds[1:]))


@pytest.mark.parametrize('nested', [True, False])
def test_imagenet_folder_with_or_without_class_folders(tmp_path, nested):
    """The published pipeline on a folder of images (labels ignored)."""
    import cv2
    import numpy as np
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(str(ROOT / 'configs/pretrain/'
                              'flsl_vit-small-p16_8xb64-300e_in1k.py'))
    for i in range(3):
        folder = tmp_path / 'train' / (f'n0{i}' if nested else '')
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f'{i}.JPEG'),
                    (np.random.RandomState(i).rand(120, 150, 3) * 255).astype('uint8'))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = str(tmp_path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(ds_cfg)
    assert len(ds) == 3
    sample = ds[0]
    assert [tuple(v.shape) for v in sample['inputs']] == [(3, 224, 224)] * 2 + \
        [(3, 96, 96)] * 2
    assert [int(m.sum()) for m in sample['data_samples'].query_masks] == [16, 9, 9]


PRETRAIN = [c for c in CONFIGS if c.startswith('configs/pretrain/')]
COMMON_HOOKS = {'FLSLTeacherUpdateHook', 'FreezeLastLayerHook',
                'PerParamGradClipHook', 'NonFiniteLossHook', 'RNGStateHook'}
HOOKS_OF = {'FLSL': COMMON_HOOKS | {'FLSLScheduleHook'},
            'DINO': COMMON_HOOKS | {'DINOScheduleHook'}}


@pytest.mark.parametrize('path', PRETRAIN)
def test_flsl_hooks_are_named_default_hooks(path, tmp_path):
    """A child config that sets custom_hooks, or changes one FLSL / DINO hook,
    keeps all of them (mmengine merges default_hooks by key, replaces lists)."""
    cfg = Config.fromfile(str(ROOT / path))
    FLSL_HOOKS = HOOKS_OF[cfg.model.type]
    assert not HOOKS_OF['FLSL'] ^ HOOKS_OF['DINO'] <= {
        h.type for h in cfg.default_hooks.values()}  # not both schedule hooks
    assert FLSL_HOOKS <= {h.type for h in cfg.default_hooks.values()}
    assert not any(h.get('type') in FLSL_HOOKS for h in cfg.get('custom_hooks', []))
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['{ROOT / path}']\n"
                     "custom_hooks = [dict(type='EMAHook')]\n"
                     "default_hooks = dict(grad_clip=dict(max_norm=1.0))\n")
    cfg = Config.fromfile(str(child))
    types = {h.type for h in cfg.default_hooks.values()}
    assert FLSL_HOOKS <= types and cfg.default_hooks.grad_clip.max_norm == 1.0


def test_published_dino_settings():
    """main_dino.py's ViT-S/16 setting (docs/dino.md), 10 local crops."""
    cfg = Config.fromfile(str(ROOT / 'configs/pretrain/'
                              'dino_vit-small-p16_8xb64-100e_in1k.py'))
    assert cfg.model.type == 'DINO'
    bb = cfg.model.backbone
    assert (bb.arch, bb.patch_size, bb.drop_path_rate) == ('small', 16, 0.1)
    assert bb.with_cls_token and bb.pos_embed_type == 'learnable'
    assert bb.out_type == 'cls_token'
    head = cfg.model.head
    assert (head.out_channels, head.hidden_channels, head.bottleneck_channels,
            head.num_layers, head.use_bn, head.norm_last_layer) == (
                65536, 2048, 256, 3, False, True)
    loss = cfg.model.loss
    assert (loss.student_temp, loss.teacher_temp, loss.warmup_teacher_temp,
            loss.warmup_teacher_temp_epochs, loss.center_momentum) == (
                0.1, 0.04, 0.04, 0, 0.9)
    assert cfg.model.teacher_momentum == 0.004 and cfg.model.teacher_end_momentum == 0
    assert cfg.train_dataloader.batch_size == 64 and cfg.train_cfg.max_epochs == 100
    assert cfg.train_dataloader.drop_last is True
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(5e-4 * 512 / 256)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.04
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'  # use_fp16 True
    warm, cos, wd = cfg.param_scheduler
    assert warm.end == 10 and cos.eta_min == 1e-6 and cos.end == 100
    assert wd.eta_min_ratio == 10.0 and wd.T_max == 100  # 0.04 -> 0.4
    crops = cfg.train_dataloader.dataset.pipeline[1]
    assert crops.type == 'DINOMultiCrop'
    assert (crops.global_size, crops.local_size, crops.num_local_crops) == (224, 96, 10)
    assert tuple(crops.global_scale) == (0.4, 1.0)
    assert tuple(crops.local_scale) == (0.05, 0.4)
    hooks = {h.type: h for h in cfg.default_hooks.values()}
    assert 'FLSLScheduleHook' not in hooks
    assert hooks['PerParamGradClipHook'].max_norm == 3.0
    assert hooks['FreezeLastLayerHook'].freeze_last_layer == 1


def test_dino_demo_configs_keep_the_method():
    """The DINO demo and study configs scale sizes and schedule lengths only."""
    pub = Config.fromfile(str(ROOT / 'configs/pretrain/'
                              'dino_vit-small-p16_8xb64-100e_in1k.py'))
    for name in ('dino_vit-tiny-p16_demo.py', 'dino_vit-tiny-p16_1xb64-10e_demo-rc.py',
                 'dino_vit-tiny-p16_1xb256-100e_demo-rc4k.py'):
        cfg = Config.fromfile(str(ROOT / 'configs/pretrain' / name))
        assert cfg.model.loss == pub.model.loss, name
        for key in ('teacher_momentum', 'teacher_end_momentum'):
            assert cfg.model[key] == pub.model[key], key
        bb = cfg.model.backbone
        assert bb.with_cls_token and bb.pos_embed_type == 'learnable'
        assert cfg.model.head.norm_last_layer is True
        crops = cfg.train_dataloader.dataset.pipeline[1]
        assert crops.num_local_crops == 10 and tuple(crops.global_scale) == (0.4, 1.0)
        assert cfg.default_hooks.loss_schedule.type == 'DINOScheduleHook'


@pytest.mark.parametrize('budget', ['1xb64-10e_demo-rc', '1xb256-100e_demo-rc4k'])
def test_dino_study_arm_has_the_flsl_arms_budget(budget):
    """The study's DINO arm has the FLSL arm's data, batch, lr, epochs and head."""
    dino = Config.fromfile(str(ROOT / f'configs/pretrain/dino_vit-tiny-p16_{budget}.py'))
    flsl = Config.fromfile(str(ROOT / f'configs/pretrain/flsl_vit-tiny-p16_{budget}.py'))
    assert dino.train_dataloader.dataset.data_root == \
        flsl.train_dataloader.dataset.data_root
    assert dino.train_dataloader.dataset.demo_kwargs == \
        flsl.train_dataloader.dataset.demo_kwargs
    assert dino.train_dataloader.batch_size == flsl.train_dataloader.batch_size
    assert dino.optim_wrapper.optimizer.lr == flsl.optim_wrapper.optimizer.lr
    assert dino.train_cfg.max_epochs == flsl.train_cfg.max_epochs
    assert dino.param_scheduler == flsl.param_scheduler
    for key in ('out_channels', 'hidden_channels', 'bottleneck_channels'):
        assert dino.model.head[key] == flsl.model.head[key], key
    assert dino.model.backbone.arch == flsl.model.backbone.arch == 'tiny'


def test_teacher_temperature_comes_from_the_loss_config():
    """tau_t has one place (model.loss); a value set there is the one trained with."""
    from types import SimpleNamespace

    from flsl_mm.engine import FLSLScheduleHook
    cfg = Config.fromfile(str(ROOT / 'configs/pretrain/flsl_vit-tiny-p16_demo.py'))
    cfg.model.loss.warmup_teacher_temp = 0.02
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    hook = FLSLScheduleHook(**{k: v for k, v in cfg.default_hooks.loss_schedule.items()
                               if k != 'type'})

    class Hub:
        def update_scalar(self, *a):
            pass
    runner = SimpleNamespace(model=model, iter=0, max_iters=8, epoch=0,
                             message_hub=Hub(), hooks=[])
    hook.before_train(runner)
    hook.before_train_iter(runner, 0)
    assert model.loss_module.current_teacher_temp == 0.02
    runner.epoch = cfg.model.loss.warmup_teacher_temp_epochs
    hook.before_train_iter(runner, 0)
    assert model.loss_module.current_teacher_temp == 0.07


DETECTION = [c for c in CONFIGS if c.startswith(('configs/det_coco/',
                                                 'configs/uavdt/'))]


@pytest.mark.parametrize('path', DETECTION)
def test_paramwise_custom_keys_match_parameters(path):
    """No dead custom_keys; no decay exactly on the published set (names holding
    'norm': the backbone's LayerNorms), while the adapter's BatchNorm keeps it."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(ROOT / path))
    cfg.model.backbone.pop('init_cfg', None)
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU; groups are the same
    cfg.optim_wrapper.pop('loss_scale', None)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for key in cfg.optim_wrapper.paramwise_cfg.get('custom_keys', {}):
        assert any(key in n for n in names), f'{path}: custom key {key!r} is dead'
    by_name = {n: g for n, p in model.named_parameters()
               for g in wrapper.optimizer.param_groups if g['params'][0] is p}
    wd = cfg.optim_wrapper.optimizer.weight_decay
    for n, g in by_name.items():
        assert g['weight_decay'] == (0.0 if 'norm' in n else wd), n
    assert any(n.startswith('neck.0.branches.0.1.') for n in by_name) or \
        'p8' in path  # the p16 adapter's BatchNorm exists and keeps decay


@pytest.mark.parametrize('name', ['flsl_vit-tiny-p16_1xb64-10e_demo-rc.py',
                                  'flsl_vit-tiny-p16_1xb256-100e_demo-rc4k.py'])
def test_learning_study_configs_keep_the_method(name):
    """The "Does FLSL learn?" configs scale sizes and schedule lengths only: every
    term, weight, temperature, beta and the EMA are the published ones."""
    cfg = Config.fromfile(str(ROOT / 'configs/pretrain' / name))
    pub = Config.fromfile(str(ROOT / 'configs/pretrain/'
                              'flsl_vit-small-p16_8xb64-300e_in1k.py'))
    for key in ('upsilon', 'eta', 'gamma', 'student_temp', 'teacher_temp',
                'warmup_teacher_temp', 'use_centering'):
        assert cfg.model.loss[key] == pub.model.loss[key], key
    for key in ('beta_sa', 'beta_ca', 'teacher_momentum', 'teacher_end_momentum'):
        assert cfg.model[key] == pub.model[key], key
    assert cfg.model.head.norm_last_layer is True
    assert cfg.default_hooks.keys() >= {'loss_schedule', 'teacher_update',
                                        'freeze_last_layer', 'grad_clip'}
    view = cfg.train_dataloader.dataset.pipeline[1]
    assert (view.teacher_scale, view.student_scale) == ((0.8, 1.0), (0.5, 1.0))
    ds = cfg.train_dataloader.dataset
    assert ds.demo_kwargs.random_colours is True
    # the schedules cover the whole run
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_epochs
    assert cfg.param_scheduler[2].T_max == cfg.train_cfg.max_epochs
    assert cfg.model.loss.warmup_teacher_temp_epochs < cfg.train_cfg.max_epochs


def test_no_config_pins_the_distributed_backend():
    """Every config leaves the backend to the base runtime's NCCL, which
    flsl_mm.compat replaces by gloo only on a machine without CUDA: a demo config
    run on GPUs must not be held to gloo."""
    for path in CONFIGS:
        cfg = Config.fromfile(ROOT / path)
        assert cfg.env_cfg.dist_cfg.backend == 'nccl', path


def test_bf16_config_is_the_published_run_in_bf16(monkeypatch):
    """bf16 autocast and no loss scaler; everything else as published. The
    wrapper is built for real (mmengine's CUDA check bypassed on this CPU)."""
    import torch
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_mod
    bf16 = Config.fromfile(ROOT / 'configs/pretrain/'
                           'flsl_vit-small-p16_8xb64-300e_in1k-bf16.py')
    fp16 = Config.fromfile(ROOT / 'configs/pretrain/'
                           'flsl_vit-small-p16_8xb64-300e_in1k.py')
    assert bf16.model == fp16.model and bf16.param_scheduler == fp16.param_scheduler
    assert bf16.optim_wrapper.optimizer == fp16.optim_wrapper.optimizer
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    model = torch.nn.Linear(2, 2)
    wrapper = build_optim_wrapper(model, dict(
        type='AmpOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
        dtype=bf16.optim_wrapper.dtype, loss_scale=bf16.optim_wrapper.loss_scale))
    assert wrapper.cast_dtype == torch.bfloat16
    assert not wrapper.loss_scaler.is_enabled()


@pytest.mark.parametrize('path', CONFIGS)
def test_every_config_checkpoints_for_preemption(path):
    """Atomic checkpoints and stop signals everywhere; pretraining also resumes
    exactly mid-epoch and checkpoints every 30 min (docs/pretraining.md,
    "Preemption and resume")."""
    cfg = Config.fromfile(str(ROOT / path))
    hook = cfg.default_hooks.checkpoint
    assert hook.type == 'ResumableCheckpointHook'
    if path.startswith('configs/pretrain/'):
        assert cfg.train_cfg.type == 'ResumableEpochBasedTrainLoop'
        assert cfg.train_dataloader.sampler.type == 'DefaultSampler'
        assert hook.interval_minutes == 30
    else:
        assert hook.get('interval_minutes', 0) == 0  # fine-tuning: as before


GPUAUG = [c for c in PRETRAIN if c.endswith('-gpuaug.py')]


def test_every_published_pretraining_config_has_a_gpuaug_variant():
    published = [c for c in PRETRAIN if '_in1k' in c and not c.endswith('-gpuaug.py')]
    assert len(published) == 5
    assert sorted(c.replace('.py', '-gpuaug.py') for c in published) == \
        sorted(c for c in GPUAUG if '_in1k' in c)


@pytest.mark.parametrize('path', GPUAUG)
def test_gpuaug_config_changes_only_where_the_views_are_made(path):
    """Parent and -gpuaug variant: equal but for the data preprocessor (on the
    device, the same mean / std), the collate function (images of any size) and
    the view transform's ``on_device`` (every other argument equal), which also
    packs ``view_params``. Decoding is the reference's in both."""
    child = Config.fromfile(str(ROOT / path)).to_dict()
    parent = Config.fromfile(str(ROOT / path.replace('-gpuaug.py', '.py'))).to_dict()
    pre_c, pre_p = child['model'].pop('data_preprocessor'), parent['model'].pop(
        'data_preprocessor')
    assert pre_c['type'] == 'DeviceViewPreprocessor'
    assert pre_p['type'] == 'MultiViewDataPreprocessor' and pre_p['to_rgb']
    assert (pre_c['mean'], pre_c['std']) == (pre_p['mean'], pre_p['std'])
    assert child['train_dataloader'].pop('collate_fn') == dict(type='pack_images_collate')
    parent['train_dataloader'].pop('collate_fn')
    pipe_c = child['train_dataloader']['dataset'].pop('pipeline')
    pipe_p = parent['train_dataloader']['dataset'].pop('pipeline')
    assert [t['type'] for t in pipe_c] == [t['type'] for t in pipe_p]
    assert pipe_p[0] == dict(type='LoadImageLikeImageFolder')  # the reference's decoding
    assert pipe_c[0] == dict(type='LoadImageLikeImageFolder', to_tensor=True)
    view_c, view_p = dict(pipe_c[1]), dict(pipe_p[1])
    assert view_c.pop('on_device') is True and not view_p.pop('on_device', False)
    assert view_c == view_p
    pack_c, pack_p = dict(pipe_c[2]), dict(pipe_p[2])
    assert pack_c.pop('algorithm_keys') == [*pack_p.pop('algorithm_keys', []),
                                            'view_params']
    assert pack_c == pack_p
    assert child == parent  # model, loss, schedules, hooks, loader, runtime


@pytest.mark.parametrize('path', PRETRAIN)
def test_every_pretraining_config_names_the_dense_probe(path, tmp_path):
    """Demo and learning-study configs probe their own data (docs/probes.md); the
    published ImageNet configs name the ADE20K probe base commented out (a probe
    set must be downloaded first), and with it the hook builds with the config's
    model and interval 10 epochs."""
    from flsl_mm.engine import DenseProbeHook
    cfg = Config.fromfile(str(ROOT / path))
    text = (ROOT / path).read_text()
    if '_in1k' in path:
        assert "# '_base_/probes/ade20k.py'," in text
        assert not cfg.get('custom_hooks')
        child = tmp_path / 'probed.py'
        child.write_text(f"_base_ = ['{ROOT / path}', "
                         f"'{ROOT / 'configs/pretrain/_base_/probes/ade20k.py'}']\n")
        cfg = Config.fromfile(str(child))
        hook = cfg.custom_hooks[0]
        assert hook.probe_set == dict(type='ade20k',
                                      data_root='data/ade/ADEChallengeData2016',
                                      max_train=500, max_val=200, short_side=224)
        assert (hook.interval, hook.by_epoch) == (10, True)
    else:
        hook = cfg.custom_hooks[0]
        assert hook.probe_set['type'] == 'demo'  # the data it trains on
        assert 'data_root' not in hook.probe_set
        epochs = cfg.train_cfg.max_epochs
        assert 5 <= epochs // hook.interval <= 10  # a curve of 6 to 11 points
    assert hook.type == 'DenseProbeHook'
    DenseProbeHook(**{k: v for k, v in hook.items() if k != 'type'})
