#!/usr/bin/env python
"""Evaluate a checkpoint with a flsl_mm detection config (COCO / UAVDT metrics)."""
import argparse
import json
import numbers
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
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation logs go')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    from flsl_mm.checkpoints.safe_load import add_trust_argument
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    import flsl_mm  # noqa: F401
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise SystemExit(f'{what} file not found: {path}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    from flsl_mm.checkpoints.safe_load import apply_trust
    try:
        apply_trust(args.trust_checkpoint)
        apply_trust(cfg.pop('trust_checkpoints', None), 'trust_checkpoints (config)')
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    from flsl_mm.compat import cpu_ddp_wrapper_cfg, ops_preflight
    cpu_ddp_wrapper_cfg(cfg)
    ops_line = ops_preflight()
    if os.environ.get('RANK', '0') == '0':
        print(ops_line, flush=True)
    if cfg.get('test_dataloader') is None or cfg.get('test_evaluator') is None:
        raise SystemExit(f'{args.config} has no test_dataloader/test_evaluator (a '
                         'pretraining config?). Evaluate pretrained backbones with '
                         'a detection config, or the dense probe.')
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must end with .pkl or .pickle')
        evaluators = cfg.test_evaluator
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        cfg.test_evaluator = list(evaluators) + [
            dict(type='DumpResults', out_file_path=args.out)]
    from flsl_mm.checkpoints import UnsafeCheckpointError
    try:
        runner = Runner.from_cfg(cfg)
        metrics = runner.test()
    except UnsafeCheckpointError as exc:
        raise SystemExit(f'error: {exc}') from None
    from flsl_mm.utils.dist import shutdown_distributed
    shutdown_distributed()
    # one JSON line (NaN where a metric is undefined, e.g. a class without GT)
    print(json.dumps({k: (round(float(v), 4) if isinstance(v, numbers.Real)
                          and not isinstance(v, bool) else v)
                      for k, v in metrics.items()}))


if __name__ == '__main__':
    sys.exit(main())
