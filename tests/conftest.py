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
