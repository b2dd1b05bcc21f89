#!/usr/bin/env python
"""Train a flsl_mm config: FLSL pretraining (mmpretrain scope) or detection
fine-tuning (mmdet scope). The usual OpenMMLab entry point."""
import argparse
import os
import os.path as osp
import sys
from pathlib import Path

# Use the flsl_mm of this checkout even when another one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config, DictAction
from mmengine.runner import Runner


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from PATH, or (no PATH) from the latest checkpoint in the '
        'work dir')
    parser.add_argument(
        '--checkpoint-iters', type=int, metavar='N',
        help='also write a mid-epoch checkpoint every N iterations '
        '(ResumableCheckpointHook interval_iters)')
    parser.add_argument(
        '--checkpoint-minutes', type=float, metavar='M',
        help='also write a mid-epoch checkpoint when M minutes passed since the '
        'last checkpoint (ResumableCheckpointHook interval_minutes)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (AmpOptimWrapper); needs a GPU')
    parser.add_argument(
        '--compile', action='store_true',
        help='compile the pretraining step (views -> losses) with torch.compile('
        'fullgraph=True), static shapes (model.compile; docs/pretraining.md, '
        '"Compiled step")')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr linearly with the total batch size '
                        '(relative to auto_scale_lr.base_batch_size)')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training (detection)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    from flsl_mm.checkpoints.safe_load import add_trust_argument
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _say(message: str) -> None:
    if os.environ.get('RANK', '0') == '0':
        print(f'[train] {message}', file=sys.stderr, flush=True)


def resume_checkpoint(work_dir: str, resume: str) -> str | None:
    """The checkpoint ``--resume`` continues from: a given path, which must be
    complete, or (``auto``) the newest complete one of the work dir, skipping
    broken ones with a warning; None when the work dir has no checkpoint yet."""
    from flsl_mm.engine.checkpoint_io import (NoGoodCheckpoint, checkpoint_problem,
                                              find_resume_checkpoint)
    if resume != 'auto':
        problem = checkpoint_problem(resume)
        if problem is not None:
            raise SystemExit(f'--resume: cannot resume from {resume}: {problem}')
        return resume
    try:
        path = find_resume_checkpoint(work_dir, warn=lambda m: _say(f'WARNING: {m}'))
    except NoGoodCheckpoint as exc:
        raise SystemExit(f'--resume: {exc}') from None
    if path is None:
        _say(f'--resume: no checkpoint in {work_dir} yet: starting from scratch')
    return path


def set_checkpoint_intervals(cfg: Config, args) -> None:
    """--checkpoint-iters / --checkpoint-minutes into the checkpoint hook."""
    wanted = {'interval_iters': args.checkpoint_iters,
              'interval_minutes': args.checkpoint_minutes}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return
    from flsl_mm.engine import ResumableCheckpointHook
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    if hook.get('type') not in ('ResumableCheckpointHook', ResumableCheckpointHook):
        raise SystemExit(
            f'--checkpoint-iters/--checkpoint-minutes need '
            f"default_hooks.checkpoint.type='ResumableCheckpointHook'; "
            f'{args.config} has {hook.get("type")!r}')
    hook.update(wanted)


def set_compile(cfg: Config, config: str) -> None:
    """--compile: the pretraining model's ``compile`` (its step compiled with
    ``fullgraph=True``); refused for other models."""
    from mmengine.registry import MODELS

    from flsl_mm.models import StudentTeacher
    with MODELS.switch_scope_and_registry(cfg.get('default_scope')) as registry:
        model_type = registry.get(cfg.model.get('type'))
    if not (isinstance(model_type, type) and issubclass(model_type, StudentTeacher)):
        raise SystemExit(f'--compile compiles the pretraining step of FLSL / DINO; '
                         f'{config} trains {cfg.model.get("type")} (mmengine\'s own '
                         "compile=True in the config compiles a model's train_step)")
    if not cfg.model.get('compile'):
        cfg.model.compile = True


def trust_checkpoints(cfg, args) -> None:
    """``--trust-checkpoint`` and the config's ``trust_checkpoints`` list: the files
    that may be loaded with a full pickle load (docs/checkpoints.md)."""
    from flsl_mm.checkpoints.safe_load import apply_trust
    try:
        apply_trust(args.trust_checkpoint)
        apply_trust(cfg.pop('trust_checkpoints', None), 'trust_checkpoints (config)')
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def build_cfg(args) -> Config:
    import flsl_mm  # noqa: F401  (registers components, applies compat fixes)
    if not osp.isfile(args.config):
        raise SystemExit(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    trust_checkpoints(cfg, args)
    old = (cfg.get('default_hooks') or {}).get('flsl_schedule')
    if isinstance(old, dict) and 'type' not in old:
        raise SystemExit(
            f'{args.config}: default_hooks.flsl_schedule overrides a hook the base '
            'runtime no longer has: the schedule hook is default_hooks.loss_schedule '
            '(FLSLScheduleHook; DINOScheduleHook for DINO) since the DINO baseline; '
            'rename the key (docs/pretraining.md)')
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA GPU (mmengine AmpOptimWrapper); '
                             'this machine has none')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.compile:
        set_compile(cfg, args.config)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr: the config has no '
                             'auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.no_validate:
        for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
            cfg[key] = None
    set_checkpoint_intervals(cfg, args)
    if args.resume is not None:
        cfg.load_from = resume_checkpoint(cfg.work_dir, args.resume)
        cfg.resume = cfg.load_from is not None
    if cfg.get('model_wrapper_cfg') is not None and 'find_unused_parameters' in cfg:
        # mmengine reads the top-level key only when there is no model_wrapper_cfg
        cfg.model_wrapper_cfg.find_unused_parameters = cfg.find_unused_parameters
    from flsl_mm.compat import cpu_ddp_wrapper_cfg, ops_preflight
    cpu_ddp_wrapper_cfg(cfg)
    ops_line = ops_preflight()
    if os.environ.get('RANK', '0') == '0':
        print(ops_line, flush=True)
    return cfg


def early_stop_signals(cfg) -> None:
    """The checkpoint hook's stop signals recorded from before the Runner builds
    its loaders: workers forked while it does (an iteration-based loop's) keep
    running on a job-wide SIGTERM, and a signal during start-up is acted on at
    the first iteration (``flsl_mm.engine.preemption.install_early``)."""
    from flsl_mm.engine import ResumableCheckpointHook
    from flsl_mm.engine.preemption import install_early
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    if hook.get('type') in ('ResumableCheckpointHook', ResumableCheckpointHook):
        signals = hook.get('signals', ('SIGTERM', 'SIGUSR1'))
        install_early([signals] if isinstance(signals, str) else list(signals))


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    from flsl_mm.checkpoints import UnsafeCheckpointError
    from flsl_mm.engine.preemption import EXIT_PREEMPTED, TrainingPreempted
    early_stop_signals(cfg)
    status = 0
    try:
        runner = Runner.from_cfg(cfg)
        from flsl_mm.utils.dist import log_nodes
        log_nodes()  # one line per node: its ranks, the rendezvous address
        if args.resume is not None:  # one checkpoint for all ranks: rank 0's
            from flsl_mm.engine.checkpoint_io import agree_on_resume
            agree_on_resume(runner, warn=lambda m: runner.logger.warning(m))
        runner.train()
    except TrainingPreempted:  # a stop signal: a checkpoint is written, say so, end
        runner.call_hook('after_run')
        status = EXIT_PREEMPTED  # not finished: to be resumed
    except UnsafeCheckpointError as exc:
        raise SystemExit(f'error: {exc}') from None
    from flsl_mm.utils.dist import shutdown_distributed
    shutdown_distributed()
    return status


if __name__ == '__main__':
    sys.exit(main())
