"""Broken fine-tuning data: invalid COCO / UAVDT annotations are named (file and
annotation id / line) and left out, and the Mask R-CNN and UAVDT demos train to
the end on them; a segmentation map of the wrong size is named; and
tools/misc/check_dataset.py finds exactly the bad set on each fixture and on
the pretraining folder with bad files."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flsl_mm.datasets.bad_samples import read_records

DET = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'
UAVDT = 'configs/uavdt/faster-rcnn_flsl-vit-tiny-p16_fpn_uavdt-demo.py'
SEG = 'configs/seg_ade20k/semfpn_flsl-vit-tiny-p16_demo.py'
PRETRAIN = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def run(repo_root, *cmd, env=None, ok=True):
    proc = subprocess.run([sys.executable, *cmd], cwd=repo_root, capture_output=True,
                          text=True, timeout=900, env=env)
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-4000:]
    return out


def check_dataset(repo_root, config, out, *options, env=None):
    """check_dataset.py's records; it must exit 1 (something is bad)."""
    log = run(repo_root, 'tools/misc/check_dataset.py', config, '--workers', '2',
              '--out', str(out), '--cfg-options', *options, env=env, ok=False)
    assert f'list written to {out}' in log
    return read_records(out), log


@pytest.fixture(scope='module')
def broken_coco(demo_root, tmp_path_factory):
    """The demo data with 4 invalid annotations in instances_train.json."""
    root = tmp_path_factory.mktemp('broken_coco') / 'demo'
    shutil.copytree(demo_root, root)
    path = root / 'annotations' / 'instances_train.json'
    coco = json.loads(path.read_text())
    anns = coco['annotations']
    targets = anns[:4]
    targets[0]['bbox'][2] = float('inf')  # json writes Infinity
    targets[1]['segmentation'] = [[1.0, 1.0, 5.0, 5.0]]  # 2 points
    targets[2]['bbox'][3] = -4.0
    targets[3]['category_id'] = 99
    path.write_text(json.dumps(coco))
    reasons = {targets[0]['id']: 'is not 4 finite numbers',
               targets[1]['id']: 'polygon 0 has 4 coordinates',
               targets[2]['id']: 'has a negative width or height',
               targets[3]['id']: 'category_id 99 is not a category'}
    return root, reasons


def det_options(root):
    return [f'train_dataloader.dataset.data_root={root}',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=4', 'train_dataloader.batch_size=2']


def test_mask_rcnn_demo_names_invalid_annotations_and_trains(repo_root, broken_coco,
                                                            tmp_path):
    root, reasons = broken_coco
    log = run(repo_root, 'tools/train.py', DET, '--work-dir', str(tmp_path / 'work'),
              '--cfg-options', *det_options(root), 'model.backbone.init_cfg=None',
              'train_cfg.max_epochs=1', 'val_cfg=None', 'val_dataloader=None',
              'val_evaluator=None')
    for ann_id, reason in reasons.items():
        assert f'instances_train.json: annotation {ann_id} (image ' in log
        assert reason in log
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    assert 'nan' not in log.split('Epoch(train)')[-1].split('\n')[0].lower()


def test_check_dataset_finds_the_invalid_coco_annotations(repo_root, broken_coco,
                                                          tmp_path):
    root, reasons = broken_coco
    records, _ = check_dataset(repo_root, DET, tmp_path / 'bad.jsonl',
                               *det_options(root))
    assert {r['annotation_id'] for r in records} == set(reasons)
    for r in records:
        assert r['path'].endswith('instances_train.json')
        assert reasons[r['annotation_id']] in r['reason']


def test_uavdt_demo_names_an_invalid_row_and_trains(repo_root, tmp_path):
    from flsl_mm.datasets.uavdt.demo import ensure_uavdt_demo
    env = dict(os.environ, FLSL_MM_CACHE=str(tmp_path / 'cache'))
    # the config's demo settings, with 4 frames a sequence
    root = ensure_uavdt_demo(tmp_path / 'uavdt_demo', num_frames=4, img_size=(180, 320))
    whole = sorted(root.glob('UAV-benchmark-M/*/gt/gt_whole.txt'))[0]
    lines = whole.read_text().splitlines()
    lines.append('1,77,10,10,-5,12,1,1,1')  # a box of negative width
    whole.write_text('\n'.join(lines) + '\n')
    bad_line = len(lines)
    opts = [f'train_dataloader.dataset.data_root={root}',
            'train_dataloader.dataset.demo_kwargs.num_frames=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False']
    records, _ = check_dataset(repo_root, UAVDT, tmp_path / 'bad.jsonl', *opts, env=env)
    assert [(r['path'], r['line'], r['reason']) for r in records] == [
        (str(whole), bad_line, 'box of negative size (-5 x 12)')]
    log = run(repo_root, 'tools/train.py', UAVDT, '--work-dir', str(tmp_path / 'work'),
              '--cfg-options', *opts, 'model.backbone.init_cfg=None',
              'train_cfg.max_epochs=1', 'val_cfg=None', 'val_dataloader=None',
              'val_evaluator=None', env=env)
    assert f'invalid annotation left out: {whole}:{bad_line}: box of negative size' in log
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()


def test_a_segmentation_map_of_the_wrong_size_is_named(repo_root, demo_root, tmp_path):
    root = tmp_path / 'demo'
    shutil.copytree(demo_root, root)
    label = sorted((root / 'train' / 'semantic').glob('*.png'))[3]
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(label)
    records, _ = check_dataset(repo_root, SEG, tmp_path / 'bad.jsonl',
                               f'train_dataloader.dataset.data_root={root}')
    assert len(records) == 1
    assert records[0]['path'] == str(root / 'train' / 'images' / label.name)
    assert f'segmentation map {label} is 30x20 px' in records[0]['reason']
    # in training the sample is left out (mmengine's dataset loads another one)
    from flsl_mm.datasets import CheckSegMapSize
    sample = dict(gt_seg_map=np.zeros((20, 30), np.uint8), ori_shape=(96, 128),
                  img_path='x.png', seg_map_path=str(label))
    assert CheckSegMapSize()(dict(sample)) is None
    with pytest.raises(ValueError, match='x.png: segmentation map .* is 30x20 px, its '
                       'image 128x96 px'):
        CheckSegMapSize(on_invalid='raise')(dict(sample))


def test_check_dataset_on_a_davis_folder(repo_root, tmp_path):
    from flsl_mm.datasets.davis import make_davis_demo
    root = make_davis_demo(tmp_path / 'davis', num_sequences=2, num_frames=4)
    frame = sorted(root.glob('JPEGImages/480p/demo-00/*.jpg'))[1]
    frame.write_bytes(frame.read_bytes()[:-200])  # cut inside the scan
    ann = sorted(root.glob('Annotations/480p/demo-01/*.png'))[2]
    with Image.open(ann) as im:
        im.resize((10, 10)).save(ann)
    log = run(repo_root, 'tools/misc/check_dataset.py', str(root), '--split', 'val',
              '--workers', '1', '--out', str(tmp_path / 'bad.jsonl'), ok=False)
    records = read_records(tmp_path / 'bad.jsonl')
    assert [(r['path'], r['reason']) for r in records] == [
        (str(frame), 'truncated JPEG: no end-of-image marker after the image data'),
        (str(ann), f'annotation is 10x10 px, its frame {ann.stem}.jpg 320x192 px')]
    assert '2 bad of 8 samples' in log


def test_check_dataset_finds_exactly_the_bad_images(repo_root, bad_image_root,
                                                    bad_image_names, tmp_path):
    records, log = check_dataset(
        repo_root, PRETRAIN, tmp_path / 'bad.jsonl',
        f'train_dataloader.dataset.data_root={bad_image_root}',
        'train_dataloader.dataset.split=bad')
    assert sorted(r['path'].rsplit('/', 1)[-1] for r in records) == sorted(
        bad_image_names)
    summary = json.loads(next(line for line in log.splitlines()
                              if line.startswith('{"samples"')))
    assert summary['samples'] == 22 and summary['bad'] == 4
    assert summary['images_per_s_per_worker'] > 0
    assert 'ETA' in log  # the progress bar
