from .fixed_bucket_ddp import FixedBucketDDP
from .hooks.deferred_runtime_info_hook import DeferredRuntimeInfoHook
from .hooks.dense_probe_hook import DenseProbeHook
from .hooks.flsl_schedule_hook import DINOScheduleHook, FLSLScheduleHook
from .hooks.grad_hooks import FreezeLastLayerHook, PerParamGradClipHook
from .hooks.host_sync_hook import HostSyncError, HostSyncHook
from .hooks.non_finite_loss_hook import NonFiniteLossHook
from .hooks.resumable_checkpoint_hook import ResumableCheckpointHook
from .hooks.rng_state_hook import RNGStateHook
from .hooks.teacher_update_hook import FLSLTeacherUpdateHook
from .loops import ResumableEpochBasedTrainLoop
from .optimizers import (FLSLOptimWrapperConstructor,
                         LayerDecayOptimWrapperConstructor)

__all__ = [
    'DeferredRuntimeInfoHook', 'DenseProbeHook', 'FLSLScheduleHook', 'DINOScheduleHook', 'FreezeLastLayerHook', 'PerParamGradClipHook',
    'HostSyncHook', 'HostSyncError',
    'NonFiniteLossHook', 'RNGStateHook', 'FixedBucketDDP', 'ResumableCheckpointHook',
    'ResumableEpochBasedTrainLoop', 'FLSLTeacherUpdateHook',
    'LayerDecayOptimWrapperConstructor', 'FLSLOptimWrapperConstructor'
]
