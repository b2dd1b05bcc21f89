import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from flsl_mm.evaluation import UAVDTMetric, average_precision, evaluate_detections


def _box(x, y, w=10, h=10):
    return [x, y, x + w, y + h]


def _sample(img_id, gts, preds, ignores=()):
    insts = [dict(bbox=b, bbox_label=l, ignore_flag=0) for b, l in gts]
    insts += [dict(bbox=b, bbox_label=c, ignore_flag=1) for b in ignores
              for c in range(3)]
    pred = InstanceData()
    pred.bboxes = torch.tensor([p[0] for p in preds], dtype=torch.float32).reshape(-1, 4)
    pred.scores = torch.tensor([p[1] for p in preds], dtype=torch.float32)
    pred.labels = torch.tensor([p[2] for p in preds], dtype=torch.int64)
    return dict(img_id=img_id, instances=insts, pred_instances=pred)


def _metric(samples):
    m = UAVDTMetric()
    m.dataset_meta = dict(classes=('car', 'truck', 'bus'))
    m.process({}, samples)
    return m.compute_metrics(m.results)


def test_average_precision_hand_computed():
    # precision 1 up to recall .5, then nothing: AP = .5
    assert average_precision(np.array([0.5, 0.5]), np.array([1.0, 0.5])) == 0.5
    # TP, FP, TP over 2 GT: envelope 1 on [0, .5], 2/3 on (.5, 1] -> 5/6
    assert average_precision(np.array([.5, .5, 1.]), np.array([1., .5, 2 / 3])) == \
        pytest.approx(5 / 6)


def test_ground_truth_as_predictions_gives_ap_one():
    gts = [(_box(0, 0), 0), (_box(30, 30, 20, 8), 1), (_box(60, 5), 0)]
    samples = [_sample(1, gts, [(b, 0.9, l) for b, l in gts], ignores=[_box(80, 80)]),
               _sample(2, gts[:1], [(gts[0][0], 0.5, 0)])]
    res = _metric(samples)
    assert res['AP70_car'] == 1.0 and res['AP70_truck'] == 1.0
    assert np.isnan(res['AP70_bus'])
    assert res['mAP70'] == 1.0 and res['AP70_overall'] == 1.0


def test_shifted_box_lowers_ap_by_expected_amount():
    # two cars; one detected exactly (score .9), the other shifted by 2 px:
    # IoU 80/120 = .667 < .7 -> a false positive and a miss: AP = .5
    gts = [(_box(0, 0), 0), (_box(50, 50), 0)]
    preds = [(_box(0, 0), 0.9, 0), (_box(52, 50), 0.8, 0)]
    assert _metric([_sample(1, gts, preds)])['AP70_car'] == 0.5
    # a 1 px shift keeps IoU 90/110 = .818 >= .7: both true positives
    preds = [(_box(0, 0), 0.9, 0), (_box(51, 50), 0.8, 0)]
    assert _metric([_sample(1, gts, preds)])['AP70_car'] == 1.0
    # if the shifted one scores higher: FP first -> precision .5 at recall .5
    preds = [(_box(0, 0), 0.7, 0), (_box(52, 50), 0.8, 0)]
    assert _metric([_sample(1, gts, preds)])['AP70_car'] == 0.25


def test_detection_inside_ignore_region_is_neither_tp_nor_fp():
    gts = [(_box(0, 0), 0)]
    inside = (_box(101, 101, 8, 8), 0.99, 0)
    with_ignore = _sample(1, gts, [(gts[0][0], 0.5, 0), inside],
                          ignores=[_box(100, 100, 20, 20)])
    assert _metric([with_ignore])['AP70_car'] == 1.0
    without = _sample(1, gts, [(gts[0][0], 0.5, 0), inside])
    assert _metric([without])['AP70_car'] == 0.5  # it would be a top-scored FP
    # and ground truth inside an ignore region is not a miss
    dets = {1: np.array([[0, 0, 10, 10, .9]])}
    ap, n = evaluate_detections(dets, {1: np.array([[0, 0, 10, 10],
                                                     [101, 101, 109, 109]])},
                                {1: np.array([[100, 100, 120, 120]])})
    assert (ap, n) == (1.0, 1)


def test_missing_instances_meta_key_is_explained():
    m = UAVDTMetric()
    with pytest.raises(KeyError, match="add 'instances'"):
        m.process({}, [dict(img_id=1, pred_instances=InstanceData())])


def test_coco_converter_round_trips_through_pycocotools(tmp_path, repo_root):
    from flsl_mm.datasets.uavdt import make_uavdt_demo
    root = make_uavdt_demo(tmp_path / 'uav', layout=2)
    proc = subprocess.run([sys.executable, 'tools/dataset_converters/uavdt_to_coco.py',
                           str(root), str(tmp_path / 'ann'), '--train-frame-stride',
                           '2'], cwd=repo_root, capture_output=True, text=True,
                          env=dict(__import__('os').environ,
                                   FLSL_MM_CACHE=str(tmp_path / 'c')))
    assert proc.returncode == 0, proc.stderr
    assert 'wrote' in proc.stdout
    train = json.loads((tmp_path / 'ann' / 'uavdt_train.json').read_text())
    assert len(train['images']) == 3 * 4  # 3 train sequences, frames 1, 3, 5, 7
    assert (root / train['images'][0]['file_name']).is_file()
    coco = COCO(str(tmp_path / 'ann' / 'uavdt_test.json'))
    anns = coco.loadAnns(coco.getAnnIds())
    crowd = [a for a in anns if a['iscrowd']]
    assert crowd and {a['category_id'] for a in crowd} == {1, 2, 3}
    # ground truth (plus a detection inside an ignore region) as detections: AP 1
    dets = [dict(image_id=a['image_id'], category_id=a['category_id'],
                 bbox=a['bbox'], score=1.0) for a in anns if not a['iscrowd']]
    c = crowd[0]
    x, y, w, h = c['bbox']
    dets.append(dict(image_id=c['image_id'], category_id=1,
                     bbox=[x + 1, y + 1, 6, 6], score=1.0))
    ev = COCOeval(coco, coco.loadRes(dets), 'bbox')
    ev.params.catIds = [1]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
