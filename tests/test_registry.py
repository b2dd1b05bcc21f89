"""Every flsl_mm component resolves by name from mmpretrain-, mmdet- and
mmseg-scoped configs (registered once, in mmengine's root registries)."""
import pytest
from mmengine.registry import DefaultScope

import flsl_mm.registry as reg

COMPONENTS = [
    ('MODELS', 'FLSLViT'), ('MODELS', 'FLSLHead'), ('MODELS', 'FLSLLoss'),
    ('MODELS', 'FLSL'), ('MODELS', 'ViTFPNAdapter'), ('TRANSFORMS', 'FLSLMultiView'),
    ('MODELS', 'DINO'), ('MODELS', 'DINOLoss'), ('TRANSFORMS', 'DINOMultiCrop'),
    ('HOOKS', 'DINOScheduleHook'), ('HOOKS', 'FLSLScheduleHook'), ('HOOKS', 'FLSLTeacherUpdateHook'),
    ('HOOKS', 'FreezeLastLayerHook'), ('HOOKS', 'PerParamGradClipHook'),
    ('HOOKS', 'NonFiniteLossHook'), ('HOOKS', 'RNGStateHook'),
    ('HOOKS', 'DeferredRuntimeInfoHook'),
    ('DATASETS', 'DemoImageDataset'), ('DATASETS', 'DemoCocoDataset'),
    ('DATASETS', 'CheckedCocoDataset'), ('TRANSFORMS', 'CheckSegMapSize'),
    ('DATASETS', 'DemoSegDataset'),
    ('DATASETS', 'UAVDTDataset'), ('DATASETS', 'UAVDTDemoDataset'),
    ('METRICS', 'UAVDTMetric'),
    ('HOOKS', 'ResumableCheckpointHook'), ('HOOKS', 'DenseProbeHook'), ('LOOPS', 'ResumableEpochBasedTrainLoop'),
    ('MODEL_WRAPPERS', 'FixedBucketDDP'),
    ('DATA_SAMPLERS', 'SeededSampler'), ('MODELS', 'DeviceViewPreprocessor'),
    ('TRANSFORMS', 'LoadImageLikeImageFolder'), ('FUNCTIONS', 'pack_images_collate'),
    ('FUNCTIONS', 'flsl_collate'), ('MODELS', 'MultiViewDataPreprocessor'),
    ('HOOKS', 'HostSyncHook'),
]
# Names a library also registers, in the scope where the library's wins (its
# own registry is searched first): docs/registry.md. mmdet's DINO is the DETR
# detector; our DINO (self-supervised) is built from pretraining configs, whose
# scope is mmpretrain.
SHADOWED = {('MODELS', 'DINO'): 'mmdet'}


def _all_registered():
    names = set()
    for reg_name in ('MODELS', 'TRANSFORMS', 'HOOKS', 'DATASETS', 'METRICS', 'LOOPS',
                     'DATA_SAMPLERS', 'FUNCTIONS', 'MODEL_WRAPPERS'):
        registry = getattr(reg, reg_name)
        for key, cls in registry.module_dict.items():
            if cls.__module__.startswith('flsl_mm'):
                names.add((reg_name, key))
    return names


def test_list_covers_every_registered_component():
    registered = _all_registered()
    assert set(COMPONENTS) <= registered
    missing = registered - set(COMPONENTS)
    assert not missing, f'add {missing} to COMPONENTS'


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
@pytest.mark.parametrize('registry_name,name', COMPONENTS)
def test_resolvable_from_scope(scope, registry_name, name):
    import importlib
    root = getattr(reg, registry_name)
    # a library without its own registry of this kind (mmpretrain: FUNCTIONS)
    # builds from the root one under its scope
    lib_registry = getattr(importlib.import_module(f'{scope}.registry'), registry_name,
                           root)
    with DefaultScope.overwrite_default_scope(scope):
        cls = lib_registry.get(name)
    if SHADOWED.get((registry_name, name)) == scope:
        assert cls is not None and cls is not root.get(name)
        assert cls.__module__.startswith(scope)
        return
    assert cls is not None and cls is root.get(name)


@pytest.mark.parametrize('scope', [None, 'mmengine', 'mmpretrain', 'mmdet'])
def test_algorithm_builds_whatever_default_scope_is_current(scope):
    """The algorithm's default data preprocessor (flsl_mm's
    MultiViewDataPreprocessor, in the root registry) is found whatever default
    scope a Runner made current."""
    from flsl_mm.models import FLSL
    cfg = dict(backbone=dict(type='FLSLViT', patch_size=16,
                             arch=dict(embed_dims=32, num_layers=1, num_heads=2)),
               head=dict(type='FLSLHead', in_channels=32, out_channels=16,
                         hidden_channels=24, bottleneck_channels=8))
    with DefaultScope.overwrite_default_scope(scope):
        model = FLSL(**cfg)
    assert type(model.data_preprocessor).__name__ == 'MultiViewDataPreprocessor'
