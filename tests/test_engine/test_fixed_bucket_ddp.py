"""FixedBucketDDP keeps DDP's initial gradient-bucket layout for the whole run
(mmengine's MMDistributedDataParallel rebuilds it after the first iterations),
so a resumed run reduces its gradients in the same layout as the run that never
stopped. The end-to-end proof (4 processes, a resume, bitwise) is in
tests/test_tools/test_real_slurm_multinode.py."""
import subprocess
import sys

SCRIPT = r'''
import os, sys, tempfile, torch, torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from flsl_mm.engine import FixedBucketDDP
dist.init_process_group('gloo', init_method='file://' + tempfile.mktemp(), rank=0,
                        world_size=1)

def layouts(wrapper):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 2))
    ddp = wrapper(net, device_ids=None, bucket_cap_mb=1e-4)  # a bucket a tensor
    for _ in range(4):
        ddp(torch.randn(3, 8)).sum().backward()
    return ddp._get_ddp_logging_data().get('rebuilt_per_bucket_param_indices')

print('mmengine', layouts(MMDistributedDataParallel))
print('fixed', layouts(FixedBucketDDP))
try:
    FixedBucketDDP(torch.nn.Linear(2, 2), device_ids=None).register_comm_hook(None, None)
except NotImplementedError as e:
    print('hook refused:', e)
dist.destroy_process_group()
'''


def test_the_bucket_layout_is_not_rebuilt(repo_root):
    proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(' ', 1) for line in proc.stdout.splitlines())
    assert lines['mmengine'] not in ('None', '')  # mmengine's wrapper rebuilds
    assert lines['fixed'] == 'None'  # ours keeps the initial layout
    assert 'FixedBucketDDP does not take communication hooks' in lines['hook']
