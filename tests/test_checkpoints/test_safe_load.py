"""Every checkpoint load without running pickles (flsl_mm.checkpoints): the plain
format our checkpoints are written in, refusals that name the file and the global,
trust per file, safetensors, and mmengine's loaders (local, http) on that path."""
import functools
import http.server
import os
import pickle
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from flsl_mm.checkpoints import (UnsafeCheckpointError, from_plain,
                                 load_checkpoint_file, plain_checkpoint, to_plain)
from flsl_mm.checkpoints import safe_load


class Payload:
    """What a malicious checkpoint carries: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def evil_checkpoint(path, marker):
    torch.save({'meta': dict(epoch=1, iter=2, note=Payload(marker)),
                'state_dict': {'w': torch.ones(2)}}, path)
    return path


def old_style_checkpoint(path):
    """What mmengine wrote before: numpy objects and a HistoryBuffer inside."""
    buffer = HistoryBuffer()
    buffer.update(1.5)
    torch.save({'meta': dict(epoch=1, iter=2, seed=np.int64(3)),
                'message_hub': dict(log_scalars={'train/loss': buffer}),
                'state_dict': {'w': torch.ones(2)}}, path)
    return path


@pytest.fixture(autouse=True)
def no_trust(monkeypatch):
    monkeypatch.setattr(safe_load, '_trusted', set())
    monkeypatch.delenv(safe_load.TRUST_ENV, raising=False)


def test_plain_format_restores_numpy_and_history_buffers_exactly(tmp_path):
    buffer = HistoryBuffer(max_length=5)
    for value in (0.5, 1.25, 3.0):
        buffer.update(value, 2)
    rng = np.random.RandomState(7).get_state()
    obj = OrderedDict(
        buffer=buffer, rng=rng, f64=np.float64(0.1), f32=np.float32(1 / 3),
        u32=np.uint32(4_000_000_000), b=np.bool_(True), s=np.array(['ab', 'c']),
        empty=np.zeros((0, 3), np.float16), nested=[(np.int8(-3), {'t': torch.ones(2)})])
    path = tmp_path / 'plain.pth'
    torch.save(plain_checkpoint({'meta': obj, 'state_dict': {'w': torch.zeros(1)}}),
               path)
    # nothing a weights-only load refuses
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    back = load_checkpoint_file(path)['meta']
    assert type(back) is OrderedDict
    assert type(back['buffer']) is HistoryBuffer and back['buffer'].max_length == 5
    for attr in ('_log_history', '_count_history'):
        got, want = getattr(back['buffer'], attr), getattr(buffer, attr)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert back['buffer'].mean() == buffer.mean()
    # in a fresh process (a resumed run that logs before any new value) nothing
    # else has registered the statistics a HistoryBuffer's __init__ registers
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HistoryBuffer, '_statistics_methods', {})
        fresh = load_checkpoint_file(path)['meta']['buffer']
        assert fresh.statistics('mean') == buffer.mean()
    assert back['rng'][0] == 'MT19937' and back['rng'][2:] == rng[2:]
    assert back['rng'][1].dtype == np.uint32 and np.array_equal(back['rng'][1], rng[1])
    for key in ('f64', 'f32', 'u32', 'b'):
        assert type(back[key]) is type(obj[key]) and back[key] == obj[key], key
    assert back['s'].dtype == obj['s'].dtype and list(back['s']) == ['ab', 'c']
    assert back['empty'].shape == (0, 3) and back['empty'].dtype == np.float16
    assert type(back['nested'][0][0]) is np.int8 and back['nested'][0][0] == -3
    assert torch.equal(back['nested'][0][1]['t'], torch.ones(2))
    assert from_plain(to_plain(5)) == 5


def test_a_payload_is_refused_never_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = evil_checkpoint(tmp_path / 'evil.pth', marker)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(path)
    assert not marker.exists()
    message = str(err.value)
    assert message.startswith(f'{path}: refused to load: its pickle needs posix.system')
    assert f'--trust-checkpoint {path}' in message
    assert 'FLSL_MM_TRUST_CHECKPOINTS=' in message
    assert 'tools/misc/upgrade_checkpoint.py' in message
    assert isinstance(err.value, pickle.UnpicklingError)
    # through mmengine (load_from, --resume, init_cfg=Pretrained all come here)
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(str(path))
    assert not marker.exists()
    # never allow-listed: getattr reaches any attribute of anything
    assert safe_load.ALLOWED_GLOBALS == []
    assert getattr not in torch.serialization.get_safe_globals()


def test_an_old_checkpoint_needs_trust_per_file(tmp_path, monkeypatch):
    path = old_style_checkpoint(tmp_path / 'old.pth')
    with pytest.raises(UnsafeCheckpointError, match=r'its pickle needs (numpy|mmengine)'):
        load_checkpoint_file(path)
    other = old_style_checkpoint(tmp_path / 'other.pth')
    safe_load.trust_checkpoint(str(path))
    with pytest.warns(UserWarning, match='full pickle load'):
        ckpt = load_checkpoint_file(path)
    assert type(ckpt['message_hub']['log_scalars']['train/loss']) is HistoryBuffer
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(other)  # trust is per file
    monkeypatch.setenv(safe_load.TRUST_ENV, str(other))
    with pytest.warns(UserWarning):
        assert load_checkpoint_file(other)['meta']['seed'] == 3


def test_not_a_checkpoint_is_a_read_error_not_a_refusal(tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(pickle.UnpicklingError) as err:
        load_checkpoint_file(bad)
    assert not isinstance(err.value, UnsafeCheckpointError)
    assert 'not a torch checkpoint that can be read safely' in str(err.value)


def test_safetensors_are_read_as_state_dicts(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / 'vit.safetensors'
    save_file({'blocks.0.norm1.weight': torch.arange(3.)}, str(path))
    assert torch.equal(load_checkpoint_file(path)['blocks.0.norm1.weight'],
                       torch.arange(3.))
    ckpt = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert list(ckpt) == ['blocks.0.norm1.weight']
    (tmp_path / 'bad.safetensors').write_bytes(b'nope')
    with pytest.raises(ValueError, match='bad.safetensors: not a readable safetensors'):
        load_checkpoint_file(tmp_path / 'bad.safetensors')


@pytest.fixture()
def http_server(tmp_path):
    """Files of ``tmp_path / 'served'`` over http on the loopback address."""
    served = tmp_path / 'served'
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def test_http_checkpoints_are_loaded_safely(http_server, tmp_path, monkeypatch):
    served, url = http_server
    hub = tmp_path / 'hub'
    monkeypatch.setattr(torch.hub, '_hub_dir', str(hub))
    torch.save(plain_checkpoint({'meta': {'seed': np.int64(5)},
                                 'state_dict': {'w': torch.ones(2)}}),
               served / 'good.pth')
    ckpt = CheckpointLoader.load_checkpoint(f'{url}/good.pth', map_location='cpu')
    assert ckpt['meta']['seed'] == 5 and type(ckpt['meta']['seed']) is np.int64
    assert (hub / 'checkpoints' / 'good.pth').is_file()  # cached once
    marker = tmp_path / 'pwned'
    evil_checkpoint(served / 'evil.pth', marker)
    with pytest.raises(UnsafeCheckpointError, match=r'evil\.pth.*posix\.system'):
        CheckpointLoader.load_checkpoint(f'{url}/evil.pth')
    assert not marker.exists()
