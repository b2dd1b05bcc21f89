import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from flsl_mm.datasets import ensure_demo_data, make_demo_data
from flsl_mm.datasets.demo_data import SEMANTIC_CLASSES


def test_demo_data_layout_and_coco(demo_root):
    meta = json.loads((demo_root / 'meta.json').read_text())
    assert meta['num_train'] == 16 and meta['semantic_classes'] == list(SEMANTIC_CLASSES)
    coco = COCO(str(demo_root / 'annotations' / 'instances_train.json'))
    assert len(coco.getImgIds()) == 16
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == \
        ['circle', 'square', 'triangle']
    ann = coco.loadAnns(coco.getAnnIds())[0]
    mask = coco.annToMask(ann)
    info = coco.loadImgs(ann['image_id'])[0]
    sem = cv2.imread(str(demo_root / 'train' / 'semantic' / info['file_name']), 0)
    # the polygon mask agrees with the semantic map's thing pixels
    cls = SEMANTIC_CLASSES.index(coco.loadCats(ann['category_id'])[0]['name'])
    agree = (sem[mask > 0] == cls).mean()
    assert agree > 0.9
    x, y, w, h = ann['bbox']
    ys, xs = np.nonzero(mask)
    assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
    assert set(np.unique(sem)) <= set(range(len(SEMANTIC_CLASSES)))


def test_deterministic_and_no_partial_output(tmp_path):
    a = make_demo_data(tmp_path / 'a', num_train=3, num_val=1, seed=5)
    b = make_demo_data(tmp_path / 'b', num_train=3, num_val=1, seed=5)
    for name in ('train/images/train_00002.png', 'annotations/instances_val.json'):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    with pytest.raises(FileExistsError):
        make_demo_data(tmp_path / 'a')
    # ensure_demo_data keeps a complete set and refuses a foreign folder
    assert ensure_demo_data(a) == a
    # settings asked for explicitly must match the ones the set was made with
    assert ensure_demo_data(a, num_train=3, seed=5) == a
    with pytest.raises(ValueError, match=r'random_colours=False \(asked for True\)'):
        ensure_demo_data(a, num_train=3, random_colours=True)
    (tmp_path / 'junk').mkdir()
    (tmp_path / 'junk' / 'x.txt').write_text('x')
    with pytest.raises(FileExistsError, match='no demo meta.json'):
        ensure_demo_data(tmp_path / 'junk')
    assert not any(p.name.startswith('.') for p in tmp_path.iterdir())


def test_cli(tmp_path, repo_root):
    import subprocess
    import sys
    cmd = [sys.executable, 'tools/misc/make_demo_data.py', str(tmp_path / 'd'),
           '--num-train', '2', '--num-val', '1']
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0 and 'wrote 2 train + 1 val' in proc.stdout
    again = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    assert again.returncode == 2 and 'overwrite' in again.stderr
