"""The parent side of a compare: start one worker process per framework, let them train one block of steps
at a time in the interleaved order, and collect what they report. The parent imports no framework."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from .. import machine
from ..errors import UserError
from .schedule import block_ends, interleaved


WORKER_COMMAND = [sys.executable, "-m", "twincnn.compare.worker"]


class WorkerFailed(RuntimeError):
    """A worker died without a message: a bug, whose traceback the worker printed on stderr."""


class Worker:
    def __init__(self, job: dict):
        self.job, self.label = job, job["label"]
        # stderr is shared with the parent, so progress bars and any traceback reach the user directly.
        self.process = subprocess.Popen(WORKER_COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        bufsize=1)
        self._send(json.dumps(job))

    def _send(self, line: str) -> None:
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.expect("any")  # the worker is gone: say why

    def expect(self, event: str) -> dict:
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            if code < 0:  # a signal from outside (the out-of-memory killer, a user's kill): not a bug here
                raise UserError(f"the {self.label} worker was killed by {signal.Signals(-code).name} before "
                                f"sending '{event}'; nothing was written (out of memory? see dmesg)")
            raise WorkerFailed(f"the {self.label} worker exited with code {code} before sending '{event}' "
                               f"(its traceback, if any, is above)")
        message = json.loads(line)
        if message["event"] == "error":
            raise UserError(message["message"])
        if event != "any" and message["event"] != event:
            raise WorkerFailed(f"the {self.label} worker sent '{message['event']}' where '{event}' was due")
        return message

    def train_block(self) -> dict:
        """One block of steps; its message, with the CPU share other processes took meanwhile."""
        before = machine.load_reading()
        self._send("go")
        block = self.expect("block")
        block["other_cpu_share"] = machine.other_cpu_share(before, machine.load_reading(), block["cpu_seconds"])
        return block

    def close(self) -> None:
        """End an idle worker (after its "done"): it exits once stdin closes."""
        self.process.stdin.close()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def run_repeat(jobs: list[dict], repeat: int, log=print) -> list[dict]:
    """Train every job's blocks interleaved; return, per job, its ready/block/epoch/done messages.

    After an epoch's last block the worker evaluates (untimed) and reports the epoch before any other
    worker gets "go"; after its last epoch it wraps up (a fit() ending, final predictions) and reports
    "done" first too. Workers exit only after the whole schedule, so no teardown runs inside a timed block."""
    workers, epochs = [], jobs[0]["epochs"]  # every job of a repeat has the same epochs and blocks
    blocks = len(block_ends(jobs[0]["steps_per_epoch"], jobs[0]["block_steps"]))
    try:
        for job in jobs:  # start them all; their imports and set-up overlap, their training never does
            workers.append(Worker(job))
        ready = [w.expect("ready") for w in workers]
        timed = {w.label: {"blocks": [], "epochs": []} for w in workers}
        done = [None] * len(workers)
        for position, (epoch, block, slot) in enumerate(interleaved(len(workers), epochs, repeat, blocks)):
            worker = workers[slot]
            timed[worker.label]["blocks"].append({**worker.train_block(), "position": position})
            if block == blocks:
                timed[worker.label]["epochs"].append(worker.expect("epoch"))
                if epoch == epochs:
                    done[slot] = worker.expect("done")
        for w in workers:
            w.close()
    finally:
        for w in workers:  # on any failure or Ctrl-C, no worker survives the parent
            w.stop()
    return [{"ready": r, **timed[w.label], "done": d} for w, r, d in zip(workers, ready, done)]
