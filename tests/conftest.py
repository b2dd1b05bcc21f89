import io
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault('OMP_NUM_THREADS', '2')

import flsl_mm  # noqa: E402,F401  (registers components, applies compat fixes)


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory) -> Path:
    """A small demo data set shared by the whole session."""
    from flsl_mm.datasets import make_demo_data
    root = tmp_path_factory.mktemp('demo') / 'flsl_demo'
    return make_demo_data(root, num_train=16, num_val=8, img_size=(96, 128), seed=0)


# ---- a training folder with the bad files of a real one (bad samples) ----
BAD = ('bad_truncated.jpg', 'bad_empty.jpg', 'bad_text.jpg', 'bad_tiny.png')
GOOD_ODD = ('odd_png_named.JPEG', 'odd_cmyk.jpg')


def _noise_image(seed: int, size=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((*size, 3)) * 255).astype(np.uint8)


def make_bad_image_folder(demo_root: Path, root: Path) -> Path:
    """A copy of ``demo_root`` with a split ``bad`` (``bad/images``: the training
    images and a truncated JPEG, a zero-byte file, a text file named .jpg, a 1x1
    image (the ``BAD`` ones), a PNG named .JPEG and a CMYK JPEG (``GOOD_ODD``:
    decoded)); train with ``train_dataloader.dataset.split=bad`` (the dense
    probe keeps its labelled ``train`` / ``val`` images)."""
    shutil.copytree(demo_root, root)
    images = root / 'bad' / 'images'
    shutil.copytree(root / 'train' / 'images', images)
    jpeg = io.BytesIO()
    Image.fromarray(_noise_image(1)).save(jpeg, 'JPEG', quality=90)
    data = jpeg.getvalue()
    (images / 'bad_truncated.jpg').write_bytes(data[:len(data) * 2 // 3])
    (images / 'bad_empty.jpg').write_bytes(b'')
    (images / 'bad_text.jpg').write_text('this is not an image\n')
    Image.new('RGB', (1, 1), (200, 10, 10)).save(images / 'bad_tiny.png')
    Image.fromarray(_noise_image(2)).save(images / 'odd_png_named.JPEG', 'PNG')
    Image.fromarray(_noise_image(3)).convert('CMYK').save(images / 'odd_cmyk.jpg', 'JPEG')
    return root


@pytest.fixture(scope='session')
def bad_image_root(demo_root, tmp_path_factory) -> Path:
    """The demo data with bad files in its training folder (``BAD`` must be
    refused, ``GOOD_ODD`` decoded)."""
    return make_bad_image_folder(demo_root, tmp_path_factory.mktemp('bad') / 'demo')


@pytest.fixture(scope='session')
def bad_image_names() -> tuple:
    """The file names in ``bad_image_root``'s training folder that are bad."""
    return BAD


from mmengine.registry import DefaultScope  # noqa: E402

_SCOPES_AT_START = frozenset(DefaultScope._instance_dict)


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """A Runner (e.g. ``default_scope='mmengine'``) stays the current
    ``DefaultScope`` for the rest of the process: after every test, forget the
    scopes made since the session started (by the test, or by a module-scoped
    fixture set up before it), so that every test starts from the same state."""
    yield
    for name in set(DefaultScope._instance_dict) - _SCOPES_AT_START:
        DefaultScope._instance_dict.pop(name, None)


@pytest.fixture
def mmlogger_messages():
    """The messages mmengine's current logger emits during the test (e.g. the
    missing / unexpected keys of a Pretrained init)."""
    from mmengine.logging import MMLogger
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
