"""tools/train.py + tools/test.py on the UAVDT demo config: COCO-style and UAVDT
AP@0.7 metrics are both printed."""
import json
import math
import os
import re
import subprocess
import sys

CFG = 'configs/uavdt/faster-rcnn_flsl-vit-tiny-p16_fpn_uavdt-demo.py'


def run(cmd, cwd, env):
    proc = subprocess.run([sys.executable, *cmd], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_uavdt_demo_train_and_test(repo_root, tmp_path):
    env = dict(os.environ, FLSL_MM_CACHE=str(tmp_path / 'cache'))
    root = tmp_path / 'uavdt_demo'
    opts = [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.dataset.demo_kwargs.num_frames=4',
            'val_dataloader.dataset.demo_kwargs.num_frames=4',
            'test_dataloader.dataset.demo_kwargs.num_frames=4',
            'model.backbone.init_cfg=None', 'model.test_cfg.rcnn.score_thr=0.0',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    work = tmp_path / 'work'
    log = run(['tools/train.py', CFG, '--work-dir', str(work), '--cfg-options',
               'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *opts],
              repo_root, env)
    assert 'no ground truth and are skipped: M0901' in log
    assert (root / 'UAV-benchmark-M').is_dir()  # generated on first use
    out = run(['tools/test.py', CFG, str(work / 'epoch_1.pth'), '--work-dir',
               str(tmp_path / 'test'), '--cfg-options', *opts], repo_root, env)
    metrics = json.loads(re.findall(r'^\{"coco/.*\}$', out, re.M)[-1])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75',
                'coco/bbox_mAP_s', 'uavdt/AP70_car', 'uavdt/AP70_overall',
                'uavdt/mAP70'):
        assert key in metrics
    for key in ('coco/bbox_mAP', 'uavdt/AP70_overall'):
        assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= 1


def _evaluate(repo_root, tmp_path, predict):
    """The demo config's val set and evaluators, fed with ``predict(instances)``."""
    import torch
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(repo_root / CFG))
    ds_cfg = cfg.val_dataloader.dataset
    ds_cfg.data_root = str(tmp_path / 'uavdt_demo')
    ds_cfg.demo_kwargs.num_frames = 6
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = DATASETS.build(ds_cfg)
        evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = ds.metainfo
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        boxes, labels = predict([x for x in sample.instances if not x['ignore_flag']])
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.linspace(1.0, 0.5, len(labels)),
            labels=torch.tensor(labels, dtype=torch.long))
        evaluator.process([sample])
    return evaluator.evaluate(len(ds))


def test_ground_truth_scores_one_through_the_demo_metrics(repo_root, tmp_path):
    """The metric path end to end, on predictions that must score: the ground truth
    itself gives AP 1 on every class (all three are in the demo's val split), and
    the same boxes shifted by half their width give AP@0.7 = 0."""
    exact = _evaluate(repo_root, tmp_path,
                      lambda inst: ([x['bbox'] for x in inst],
                                    [x['bbox_label'] for x in inst]))
    for key in ('uavdt/AP70_car', 'uavdt/AP70_truck', 'uavdt/AP70_bus',
                'uavdt/mAP70', 'uavdt/AP70_overall', 'uavdt/mAP50',
                'coco/bbox_mAP', 'coco/bbox_mAP_75'):
        assert exact[key] == 1.0, (key, exact)

    def shifted(inst):
        boxes = [[x1 + (x2 - x1) / 2, y1, x2 + (x2 - x1) / 2, y2]
                 for x1, y1, x2, y2 in (x['bbox'] for x in inst)]
        return boxes, [x['bbox_label'] for x in inst]
    off = _evaluate(repo_root, tmp_path, shifted)
    assert off['uavdt/mAP70'] == 0.0 and off['uavdt/mAP50'] == 0.0
    assert off['coco/bbox_mAP'] == 0.0
