import logging
import os
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """A Runner built by one test (e.g. ``default_scope='mmengine'``) stays the
    current ``DefaultScope`` for the rest of the process: forget the scopes a
    test created so that the next test starts from the same state."""
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    for name in set(DefaultScope._instance_dict) - before:
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
