"""A compare worker that, for a job labelled '<name>#2', spends an extra half of every training step busy on
the CPU: a synthetic framework 1.5× slower than its twin, for tests of the verdict under load.
Run as a script in place of `python -m twincnn.compare.worker` (workers.WORKER_COMMAND).

The step and the extra work are both measured in the training thread's CPU time, not in wall time: a step that
another process preempted is not made to wait longer on top, so the slowdown stays 1.5x under competing load."""

import sys
import time

from twincnn.compare import worker

SLOWDOWN = 0.5  # extra busy CPU time per step, relative to the step's own
_step = worker.EpochClock.step
_last = [time.thread_time()]


def slowed_step(self, done):
    if self.job["label"].endswith("#2"):
        end = time.thread_time() + SLOWDOWN * (time.thread_time() - _last[0])
        while time.thread_time() < end:
            pass
    _last[0] = time.thread_time()
    _step(self, done)


_start_block = worker.EpochClock._start_block


def started_block(self):
    _start_block(self)
    _last[0] = time.thread_time()  # what ran before the block (evaluation, set-up) is no step of it


worker.EpochClock.step = slowed_step
worker.EpochClock._start_block = started_block
sys.exit(worker.main())
