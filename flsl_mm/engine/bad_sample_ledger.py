"""The training loop's account of the bad samples it replaced: gathered from all
ranks at the host-read points, logged once, listed in
``work_dir/bad_samples.jsonl``, kept in checkpoints, capped (docs/pretraining.md,
"Bad samples")."""
from __future__ import annotations

import os.path as osp

from mmengine.dist import all_gather_object, get_rank, get_world_size, is_main_process
from mmengine.logging import print_log

from flsl_mm.datasets.bad_samples import write_records

#: the list a run writes into its work dir (the format of check_dataset.py's)
RECORDS_FILE = 'bad_samples.jsonl'
# message-hub keys (saved in checkpoints)
HUB_RECORDS = 'bad_samples'
HUB_SKIP_LIST = 'bad_samples_skip_list'


class TooManyBadSamples(RuntimeError):
    """More distinct bad files than ``max_bad_samples``: the data is broken."""


class BadSampleLedger:
    """Records of replaced bad samples (path, reason, index, replacement, epoch,
    iteration, rank; epoch and iteration 1-based, as in the log).

    Each rank notes its own as its batches arrive; :meth:`gather` (every rank, at
    the same iterations: a collective) merges them in (iteration, rank) order,
    logs the new ones on rank 0, rewrites the jsonl atomically, puts the list in
    the message hub (so a checkpoint holds exactly the records of the iterations
    before it, and a resumed run's list equals that of the run that never
    stopped), and stops the run, on every rank, when more than ``cap`` distinct
    files were bad.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.records: list[dict] = []
        self._pending: list[dict] = []

    def restore(self, runner) -> None:
        """Take the records of the checkpoint a run resumes from (none for a
        fresh run) and write them as the run's list."""
        self.records = [dict(r) for r in runner.message_hub.get_info(HUB_RECORDS, [])]
        self._pending = []
        self._publish(runner, new=[], write=True)

    def note(self, records: list[dict], epoch: int, iteration: int) -> None:
        """This rank's bad samples of the batch trained at ``iteration``."""
        rank = get_rank()
        self._pending.extend(dict(r, epoch=epoch, iteration=iteration, rank=rank)
                             for r in records)

    def gather(self, runner) -> None:
        """Merge every rank's new records (a collective when distributed)."""
        pending, self._pending = self._pending, []
        lists = all_gather_object(pending) if get_world_size() > 1 else [pending]
        new = sorted((r for rows in lists for r in rows),
                     key=lambda r: (r['iteration'], r['rank']))
        self.records.extend(new)
        self._publish(runner, new, write=bool(new))
        paths = self.distinct_paths()
        if len(paths) > self.cap:
            reasons = {r['path']: r['reason'] for r in self.records}
            listing = '\n'.join(f'  {p}: {reasons[p]}' for p in paths)
            raise TooManyBadSamples(
                f'{len(paths)} bad files, more than max_bad_samples={self.cap} '
                f'(train_cfg): the data looks broken; stopped at iteration '
                f'{runner.iter + 1}. Fix or remove them, or scan the dataset with '
                'tools/misc/check_dataset.py and train with train_cfg.skip_list=<its '
                f'bad_samples.jsonl>. The files:\n{listing}')

    def distinct_paths(self) -> list[str]:
        """The bad files, each once, in the order they were met."""
        return list(dict.fromkeys(r['path'] for r in self.records))

    def _publish(self, runner, new: list[dict], write: bool) -> None:
        hub = runner.message_hub
        hub.update_info(HUB_RECORDS, [dict(r) for r in self.records])
        hub.update_scalar('train/bad_samples', len(self.records))
        if not is_main_process():
            return
        for r in new:
            print_log(f'bad sample replaced (epoch {r["epoch"]}, iteration '
                      f'{r["iteration"]}, rank {r["rank"]}): {r["path"]}: '
                      f'{r["reason"]}; trained on {r["replacement"]} instead',
                      logger='current', level=30)
        if write:
            write_records(osp.join(runner.work_dir, RECORDS_FILE), self.records)


__all__ = ['RECORDS_FILE', 'TooManyBadSamples', 'BadSampleLedger']
