# Runtime of the MMSegmentation configs (iteration-based training).
_base_ = ['default_runtime.py']
default_scope = 'mmseg'
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='ResumableCheckpointHook', by_epoch=False, interval=4000,
                    max_keep_ckpts=3),
    visualization=dict(type='SegVisualizationHook'))
visualizer = dict(type='SegLocalVisualizer', vis_backends={{_base_.vis_backends}},
                  name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
