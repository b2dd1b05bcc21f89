"""Our fine-tuned models through OpenMMLab's own APIs and tools, with no flsl_mm
import in the user's script: mmdet's DetInferencer and mmseg's MMSegInferencer
(the same predictions as tools/test.py on the same image), tools/infer.py
(pictures, predictions, UAVDT ignore regions, clear errors), and mmdet's /
mmseg's own tools/test.py and browse_dataset.py (the same metrics as ours)."""
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

REPO = Path(__file__).resolve().parents[2]
DET = REPO / 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'
UAVDT = REPO / 'configs/uavdt/faster-rcnn_flsl-vit-tiny-p16_fpn_uavdt-demo.py'
SEG = REPO / 'configs/seg_ade20k/semfpn_flsl-vit-tiny-p16_demo.py'


def random_checkpoint(config: Path, path: Path) -> Path:
    """A freshly initialised model of ``config`` saved as a fine-tuned one
    (weights + the dataset's classes), as a user's checkpoint would be."""
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS'])
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = registry.MODELS.build(cfg.model)
        model.init_weights()
        dataset = registry.DATASETS.get(cfg.test_dataloader.dataset.type)
    meta = {k: list(v) for k, v in dataset.METAINFO.items()}  # classes, palette
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=meta)), path)
    return path


def plain(code: str, cwd) -> str:
    """``code`` in a new interpreter, outside the checkout: no flsl_mm import."""
    assert 'import flsl_mm' not in code and 'from flsl_mm' not in code
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def run(cmd, cwd=REPO, ok=True):
    proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def data_options(root, det=True, images=2):
    opts = [f'test_dataloader.dataset.data_root={root}',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            f'test_dataloader.dataset.indices={images}']
    if det:
        opts.append(f'test_evaluator.ann_file={root}/annotations/instances_val.json')
    return opts


@pytest.fixture(scope='module')
def det_ckpt(tmp_path_factory):
    return random_checkpoint(DET, tmp_path_factory.mktemp('det') / 'mask_rcnn.pth')


def test_det_inferencer_gives_tools_test_predictions(demo_root, det_ckpt, tmp_path):
    ours = run(['tools/test.py', DET, det_ckpt, '--work-dir', tmp_path / 'test', '--out',
                tmp_path / 'preds.pkl', '--cfg-options', *data_options(demo_root)])
    assert 'coco/bbox_mAP' in ours.stdout + ours.stderr
    with open(tmp_path / 'preds.pkl', 'rb') as f:  # our own file: DumpResults'
        first = pickle.load(f)[0]
    out = plain(f'''
        import json, sys
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model={str(DET)!r}, weights={str(det_ckpt)!r},
                                   device='cpu')
        inferencer({first['img_path']!r}, out_dir={str(tmp_path / 'out')!r},
                   no_save_pred=False)
        print('flsl_mm' in sys.modules)  # imported by the config, not by us
        ''', cwd=tmp_path)
    assert out.split()[-1] == 'True'
    name = Path(first['img_path'])
    assert (tmp_path / 'out' / 'vis' / name.name).is_file()
    pred = json.loads((tmp_path / 'out' / 'preds' / f'{name.stem}.json').read_text())
    inst = first['pred_instances']
    assert len(pred['bboxes']) == len(inst['bboxes']) > 0
    np.testing.assert_allclose(pred['bboxes'], inst['bboxes'].numpy(), atol=1e-3)
    np.testing.assert_allclose(pred['scores'], inst['scores'].numpy(), atol=1e-5)
    assert pred['labels'] == inst['labels'].tolist()


def test_seg_inferencer_gives_tools_test_label_map(demo_root, tmp_path):
    ckpt = random_checkpoint(SEG, tmp_path / 'semfpn.pth')
    run(['tools/test.py', SEG, ckpt, '--work-dir', tmp_path / 'test', '--out',
         tmp_path / 'preds.pkl', '--cfg-options', *data_options(demo_root, det=False)])
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        first = pickle.load(f)[0]
    out = plain(f'''
        import numpy as np
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model={str(SEG)!r}, weights={str(ckpt)!r},
                                     device='cpu')
        result = inferencer({first['img_path']!r}, out_dir={str(tmp_path / 'out')!r})
        np.save({str(tmp_path / 'map.npy')!r}, np.asarray(result['predictions']))
        print('ok')
        ''', cwd=tmp_path)
    assert out.split()[-1] == 'ok'
    ours = first['pred_sem_seg']['data'][0].numpy()
    np.testing.assert_array_equal(np.load(tmp_path / 'map.npy'), ours)
    assert list((tmp_path / 'out' / 'vis').iterdir())  # the overlay


def test_infer_tool_on_uavdt_frames_draws_the_ignore_regions(tmp_path):
    from flsl_mm.datasets import make_uavdt_demo
    root = make_uavdt_demo(tmp_path / 'uavdt', num_frames=3)
    ckpt = random_checkpoint(UAVDT, tmp_path / 'faster_rcnn.pth')
    frames = sorted(root.rglob('img000001.jpg'))
    assert frames
    proc = run(['tools/infer.py', UAVDT, ckpt, *frames, '--out-dir', tmp_path / 'out',
                '--uavdt-root', root, '--score-thr', '0.0'])
    done = json.loads((tmp_path / 'out' / 'infer.json').read_text())
    assert len(done) == len(frames)
    assert any(d['ignore_regions'] > 0 for d in done)  # the demo has some
    for d in done:
        assert Path(d['picture']).is_file()
        assert 'bboxes' in json.loads(Path(d['predictions']).read_text())
    assert f'{len(frames)} picture(s)' in proc.stdout


def test_infer_tool_names_bad_inputs_and_goes_on(demo_root, det_ckpt, tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    for src in sorted((demo_root / 'val' / 'images').iterdir())[:2]:
        shutil.copy(src, images / src.name)
    (images / 'broken.png').write_bytes(b'not an image')
    proc = run(['tools/infer.py', DET, det_ckpt, images, tmp_path / 'nothing.jpg',
                '--out-dir', tmp_path / 'out'], ok=False)
    assert proc.returncode == 1
    assert 'broken.png: cannot be read as an image' in proc.stderr
    assert 'nothing.jpg: no such file' in proc.stderr
    assert len(json.loads((tmp_path / 'out' / 'infer.json').read_text())) == 2
    assert len(list((tmp_path / 'out' / 'vis').iterdir())) == 2


def test_infer_tool_refuses_what_does_not_fit(demo_root, det_ckpt, tmp_path):
    image = sorted((demo_root / 'val' / 'images').iterdir())[0]
    wrong = run(['tools/infer.py', SEG, det_ckpt, image, '--out-dir', tmp_path],
                ok=False)
    assert wrong.returncode != 0
    assert f'{det_ckpt} does not fit' in wrong.stderr and 'missing' in wrong.stderr
    assert 'decode_head.conv_seg' in wrong.stderr  # named keys
    state = torch.load(det_ckpt, weights_only=True)['state_dict']
    backbone = {k: v for k, v in state.items() if k.startswith('backbone.')}
    torch.save(dict(state_dict=backbone), tmp_path / 'backbone.pth')
    alone = run(['tools/infer.py', DET, tmp_path / 'backbone.pth', image, '--out-dir',
                 tmp_path], ok=False)
    assert 'a backbone alone' in alone.stderr and 'flsl_to_mmdet.py' in alone.stderr
    if not torch.cuda.is_available():
        gpu = run(['tools/infer.py', DET, det_ckpt, image, '--out-dir', tmp_path,
                   '--device', 'cuda'], ok=False)
        assert gpu.returncode != 0 and 'torch sees no CUDA GPU here' in gpu.stderr


def _mim_tool(package: str, *parts: str) -> Path:
    import importlib.util
    spec = importlib.util.find_spec(package)
    return Path(spec.origin).parent / '.mim' / 'tools' / Path(*parts)


def test_mmdet_own_tools_run_our_demo_config(demo_root, det_ckpt, tmp_path):
    """mmdet's tools/test.py as its wheel ships it gives our tools/test.py's AP;
    its browse_dataset.py draws the demo set."""
    opts = data_options(demo_root, images=3)
    ours = run(['tools/test.py', DET, det_ckpt, '--work-dir', tmp_path / 'ours',
                '--cfg-options', *opts])
    theirs = run([_mim_tool('mmdet', 'test.py'), DET, det_ckpt, '--work-dir',
                  tmp_path / 'theirs', '--cfg-options', *opts], cwd=tmp_path)

    def metrics(proc):
        text = proc.stdout + proc.stderr
        return {k: float(v) for k, v in re.findall(r'(coco/\w+): (-?[\d.]+)', text)}
    a, b = metrics(ours), metrics(theirs)
    assert a and a == b and math.isfinite(a['coco/bbox_mAP'])
    run([_mim_tool('mmdet', 'analysis_tools', 'browse_dataset.py'), DET, '--not-show',
         '--output-dir', tmp_path / 'browse', '--cfg-options',
         f'train_dataloader.dataset.data_root={demo_root}',
         'train_dataloader.dataset.indices=2'], cwd=tmp_path)
    assert len(list((tmp_path / 'browse').iterdir())) == 2
    if shutil.which('mim'):  # mim where it is installed
        run(['-m', 'mim', 'run', 'mmdet', 'test', DET, det_ckpt, '--work-dir',
             tmp_path / 'mim', '--cfg-options', *opts], cwd=tmp_path)


def test_mmseg_own_test_tool_runs_our_demo_config(demo_root, tmp_path):
    ckpt = random_checkpoint(SEG, tmp_path / 'semfpn.pth')
    opts = data_options(demo_root, det=False)
    ours = run(['tools/test.py', SEG, ckpt, '--work-dir', tmp_path / 'ours',
                '--cfg-options', *opts])
    theirs = run([_mim_tool('mmseg', 'test.py'), SEG, ckpt, '--work-dir',
                  tmp_path / 'theirs', '--cfg-options', *opts], cwd=tmp_path)

    def miou(proc):
        return float(re.findall(r'mIoU: (-?[\d.]+)', proc.stdout + proc.stderr)[-1])
    assert miou(ours) == miou(theirs)
    run([_mim_tool('mmseg', 'analysis_tools', 'browse_dataset.py'), SEG, '--not-show',
         '--output-dir', tmp_path / 'browse', '--cfg-options',
         f'train_dataloader.dataset.data_root={demo_root}',
         'train_dataloader.dataset.indices=2'], cwd=tmp_path)
    assert len(list((tmp_path / 'browse').rglob('*.png'))) == 2
