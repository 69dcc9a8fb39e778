"""A compare worker that, for a job labelled '<name>#2', spends an extra half of every training step busy on
the CPU: a synthetic framework 1.5× slower than its twin, for tests of the verdict under load.
Run as a script in place of `python -m twincnn.compare.worker` (workers.WORKER_COMMAND)."""

import sys
import time

from twincnn.compare import worker

SLOWDOWN = 0.5  # extra busy time per step, relative to the step itself
_step = worker.EpochClock.step


def slowed_step(self, done):
    if self.job["label"].endswith("#2"):
        end = time.perf_counter() + SLOWDOWN * (time.perf_counter() - self.last)
        while time.perf_counter() < end:
            pass
    _step(self, done)


worker.EpochClock.step = slowed_step
sys.exit(worker.main())
