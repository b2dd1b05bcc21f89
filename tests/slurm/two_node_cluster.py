#!/usr/bin/env python
"""A two-node Slurm cluster on one machine, for the multi-node tests -- and a
readable example of what a minimal cluster needs (docs/pretraining.md,
"Multi-node").

Two network namespaces (``flslA``, ``flslB``) joined by a veth pair, each with
one interface named ``flsl0`` (10.77.0.1, 10.77.0.2: only these addresses and
loopback are used), its own ``/etc/hosts`` (``/etc/netns/<ns>/hosts``, bind-mounted
over ``/etc/hosts`` in a mount namespace of the node's processes) and its own
hostname (a UTS namespace): the nodes ``nodea`` and ``nodeb``. ``slurmctld`` and node A's
``slurmd`` run in ``flslA``, node B's ``slurmd`` in ``flslB``; one ``munged``
(its socket is a file, seen from both). The work dir is on the one file system:
the shared file system a real cluster provides.

Needs root, ``ip`` (iproute2), Debian's ``slurm-wlm`` and ``munge``.

    python tests/slurm/two_node_cluster.py up ROOT     # prints the env to use
    python tests/slurm/two_node_cluster.py down ROOT
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

NODES = {'nodea': ('flslA', '10.77.0.1'), 'nodeb': ('flslB', '10.77.0.2')}
IFACE = 'flsl0'  # the same name on both nodes: GLOO_SOCKET_IFNAME=flsl0
TOOLS = ('ip', 'nsenter', 'unshare', 'munged', 'mungekey', 'slurmctld', 'slurmd', 'sbatch',
         'squeue', 'scontrol', 'scancel', 'sinfo', 'srun')
#: a requeued job waits this long before it may start again (Slurm's credential
#: lifetime; 120 s by default)
CRED_EXPIRE_S = 10


def find(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for p in (f'/usr/sbin/{tool}', f'/usr/bin/{tool}', f'/sbin/{tool}')
         if os.path.exists(p)), None)


def missing_tools() -> list[str]:
    return [t for t in TOOLS if find(t) is None]


def _sh(*cmd, check=True, **kwargs):
    return subprocess.run([find(cmd[0]) or cmd[0], *cmd[1:]], check=check,
                          capture_output=True, text=True, **kwargs)


def slurm_conf(root: Path) -> str:
    nodes = '\n'.join(f'NodeName={name} NodeAddr={addr} CPUs={os.cpu_count() or 1} '
                      'RealMemory=4000 State=UNKNOWN'
                      for name, (_, addr) in NODES.items())
    first = next(iter(NODES))
    return f'''\
ClusterName=flsl2n
SlurmctldHost={first}({NODES[first][1]})
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock,cred_expire={CRED_EXPIRE_S}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.%n.log
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MpiDefault=none
KillWait=10
{nodes}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
'''


class TwoNodeCluster:
    """``up()`` builds the namespaces and starts the daemons; ``run`` calls a
    Slurm client command on node A; ``on(node, ...)`` runs a command on a node;
    ``down()`` stops everything and removes the namespaces."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.env = dict(os.environ, SLURM_CONF=str(self.root / 'slurm.conf'))

    # ---------------------------------------------------------------- network
    def _network(self) -> None:
        (ns_a, addr_a), (ns_b, addr_b) = NODES.values()
        for ns in (ns_a, ns_b):
            _sh('ip', 'netns', 'add', ns)
        _sh('ip', 'link', 'add', IFACE, 'type', 'veth', 'peer', 'name', 'flsl1')
        _sh('ip', 'link', 'set', IFACE, 'netns', ns_a)
        _sh('ip', 'link', 'set', 'flsl1', 'netns', ns_b)
        _sh('ip', 'netns', 'exec', ns_b, 'ip', 'link', 'set', 'flsl1', 'name', IFACE)
        hosts = '127.0.0.1 localhost\n' + ''.join(
            f'{addr} {name}\n' for name, (_, addr) in NODES.items())
        for ns, addr in ((ns_a, addr_a), (ns_b, addr_b)):
            _sh('ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', f'{addr}/24', 'dev',
                IFACE)
            _sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', IFACE, 'up')
            _sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up')
            Path(f'/etc/netns/{ns}').mkdir(parents=True, exist_ok=True)
            Path(f'/etc/netns/{ns}/hosts').write_text(hosts)

    def on(self, node: str, *cmd: str) -> list[str]:
        """``cmd`` as it runs on ``node``: in its network namespace (its
        addresses, its /etc/hosts) and under its hostname."""
        ns = NODES[node][0]
        # nsenter, not `ip netns exec`: that one mounts a fresh /sys, without
        # the cgroup file systems slurmd needs
        return [find('nsenter'), f'--net=/run/netns/{ns}', find('unshare'), '--mount',
                '--uts', 'sh', '-c', f'mount --bind /etc/netns/{ns}/hosts /etc/hosts && '
                f'hostname {node} && exec "$@"', 'sh', *cmd]

    # ---------------------------------------------------------------- daemons
    def up(self, timeout: float = 60) -> None:
        missing = missing_tools()
        if missing:
            raise RuntimeError(f'missing {", ".join(missing)}: apt-get install '
                               'slurm-wlm munge iproute2')
        self.down(quiet=True)  # what an earlier, killed run left
        root = self.root
        for sub in ('state', 'log', *(f'spool/{n}' for n in NODES)):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._network()
        key, sock = root / 'munge.key', root / 'munge.sock'
        _sh('mungekey', '-c', '-f', '-k', str(key))
        _sh('munged', f'--key-file={key}', f'--socket={sock}',
            f'--pid-file={root}/munged.pid', f'--seed-file={root}/munge.seed',
            f'--log-file={root}/log/munged.log', '--force')
        (root / 'slurm.conf').write_text(slurm_conf(root))
        first = next(iter(NODES))
        subprocess.run(self.on(first, find('slurmctld'), '-i'), env=self.env, check=True)
        for node in NODES:
            subprocess.run(self.on(node, find('slurmd'), '-N', node), env=self.env,
                           check=True)
        end = time.monotonic() + timeout
        while True:
            states = self.run('sinfo', '-h', '-N', '-o', '%N %t', check=False)
            if states.count('idle') == len(NODES):
                break
            if time.monotonic() > end:
                raise RuntimeError(f'the nodes did not come up: {states!r}' + self.logs())
            time.sleep(0.5)

    def down(self, quiet: bool = False) -> None:
        root = self.root
        if (root / 'slurm.conf').exists() and not quiet:
            self.run('scancel', '--partition=debug', check=False)
            time.sleep(1)
        for pid_file in [root / 'slurmctld.pid', *(root / f'slurmd.{n}.pid' for n in NODES),
                         root / 'munged.pid']:
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for ns, _ in NODES.values():
            for pid in _sh('ip', 'netns', 'pids', ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)  # job steps left behind
                except (OSError, ValueError):
                    pass
            _sh('ip', 'netns', 'del', ns, check=False)
            shutil.rmtree(f'/etc/netns/{ns}', ignore_errors=True)

    # ----------------------------------------------------------------- client
    def run(self, *cmd: str, check: bool = True) -> str:
        """A Slurm client command (``sbatch``, ``squeue``, ...) on node A."""
        proc = subprocess.run(self.on(next(iter(NODES)), find(cmd[0]), *cmd[1:]),
                              env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f'{" ".join(cmd)}: {proc.stderr}{self.logs()}')
        return proc.stdout.strip()

    def logs(self, lines: int = 15) -> str:
        out = ''
        for path in sorted((self.root / 'log').glob('*.log')):
            out += f'\n--- {path.name}\n' + '\n'.join(
                path.read_text(errors='replace').splitlines()[-lines:])
        return out

    def node_pids(self, node: str) -> list[int]:
        """Every process in ``node``'s namespace (its slurmd, job steps, ...)."""
        out = _sh('ip', 'netns', 'pids', NODES[node][0], check=False).stdout
        return [int(p) for p in out.split()]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ('up', 'down'):
        print(__doc__, file=sys.stderr)
        return 2
    cluster = TwoNodeCluster(argv[1])
    if argv[0] == 'up':
        cluster.up()
        print(f'export SLURM_CONF={cluster.root}/slurm.conf  # then, on node A:')
        print(f'ip netns exec {NODES["nodea"][0]} sinfo')
    else:
        cluster.down()
    return 0


if __name__ == '__main__':
    sys.exit(main())
