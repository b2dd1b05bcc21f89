"""Two processes (gloo) that found different checkpoints to resume from: both take
rank 0's (``agree_on_resume``), and checkpoints of different iterations loaded by
the ranks stop the run on every rank (``ResumableCheckpointHook``)."""
import json
import os
import socket
import subprocess
import sys

WORKER = r'''
import json, os, sys, types
import torch.distributed as dist
sys.path.insert(0, os.environ['REPO'])
import flsl_mm
from flsl_mm.engine import ResumableCheckpointHook
from flsl_mm.engine.checkpoint_io import agree_on_resume
rank = int(os.environ['RANK'])
dist.init_process_group('gloo')
runner = types.SimpleNamespace(_load_from=f'/w/iter_{8 + rank}.pth', _resume=rank == 0)
messages = []
agree_on_resume(runner, warn=messages.append)
errors = []
hook = ResumableCheckpointHook(interval=1)
for iters in ([16, 16], [16, 24]):
    try:
        hook.after_load_checkpoint(runner, {'meta': {'iter': iters[rank]}})
        errors.append(None)
    except RuntimeError as exc:
        errors.append(str(exc))
json.dump(dict(load_from=runner._load_from, resume=runner._resume,
               messages=messages, errors=errors),
          open(os.environ['OUT'], 'w'))
from flsl_mm.utils.dist import shutdown_distributed
shutdown_distributed()  # barrier first: a rank leaving early aborts the other
'''


def test_ranks_resume_from_rank_0s_choice_and_check_the_iteration(repo_root,
                                                                    tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, REPO=str(repo_root), RANK=str(rank), WORLD_SIZE='2',
                   MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                   OUT=str(tmp_path / f'{rank}.json'))
        procs.append(subprocess.Popen([sys.executable, '-c', WORKER], env=env,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    r0, r1 = (json.loads((tmp_path / f'{r}.json').read_text()) for r in range(2))
    assert r0['load_from'] == r1['load_from'] == '/w/iter_8.pth'
    assert r0['resume'] is True and r1['resume'] is True
    assert r0['messages'] == []
    assert r1['messages'] == ["rank 1: resuming from rank 0's choice /w/iter_8.pth "
                              '(this rank had found /w/iter_9.pth)']
    for result, mine in ((r0, 16), (r1, 24)):
        assert result['errors'][0] is None
        assert result['errors'][1] == (
            'the ranks loaded checkpoints of different iterations (between 16 and '
            f'24; this rank: {mine}): every rank must resume from the same file (a '
            'network file system showing ranks different files?); resume with '
            '--resume PATH')
