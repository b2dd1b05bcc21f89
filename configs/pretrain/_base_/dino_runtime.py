# DINO's training-time machinery: FLSL's runtime (EMA teacher update, last layer
# frozen in epoch 1, per-parameter clipping to 3.0, non-finite loss stop, RNG
# state) with DINO's schedule hook (tau_t per epoch) in place of FLSL's.
_base_ = ['./default_runtime.py']
default_hooks = dict(
    loss_schedule=dict(_delete_=True, type='DINOScheduleHook'))
