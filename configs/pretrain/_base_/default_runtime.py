_base_ = ['../../_base_/default_runtime.py']
default_scope = 'mmpretrain'
visualizer = dict(type='UniversalVisualizer', vis_backends={{_base_.vis_backends}})

# FLSL's training-time machinery (FLSL_SPEC sections 2, 6, 7).
custom_hooks = [
    dict(type='FLSLScheduleHook', warmup_teacher_temp=0.04, teacher_temp=0.07,
         warmup_teacher_temp_epochs=30),
    dict(type='FLSLTeacherUpdateHook'),
    dict(type='FreezeLastLayerHook', freeze_last_layer=1),
    dict(type='PerParamGradClipHook', max_norm=3.0),
    dict(type='NonFiniteLossHook'),
    dict(type='RNGStateHook'),
]
