"""The parent side of a compare: start one worker process per framework, let them train one block of steps
at a time in the interleaved order, and collect what they report. The parent imports no framework.

What the workers write besides their messages and progress bars is kept in log files (childlogs.py): a failure
ends in one line, naming the file where anything was kept, and a worker's bug shows that worker's traceback
only, not the other ranks' errors that followed from it."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading

from .. import childlogs, machine
from ..errors import ProcessFailed, UserError
from ..parallel.launch import free_ports, rank_environment, signal_killed
from .schedule import block_ends, interleaved


WORKER_COMMAND = [sys.executable, "-m", "twincnn.compare.worker"]
POLL_SECONDS = 0.5  # how soon a rank group notices that one of its ranks has died
ROOT_CAUSE_WAIT_SECONDS = 2.0  # how long the other ranks get to end after one has failed


class WorkerFailed(ProcessFailed):
    """A worker died without a message: a bug, whose traceback is in its log (the worker ``label``'s; on stderr
    under --verbose)."""

    def __init__(self, message: str, label: str | None = None):
        super().__init__(message)
        self.label = label


class Worker:
    def __init__(self, job: dict, environment: dict | None = None, label: str | None = None):
        self.job, self.label = job, label or job["label"]
        self.crashed_at = None  # when it reported an exception (a bug) on its way out
        self.logs = job["logs"]  # run_repeat's ChildLogs (not sent): its stderr; its progress bars reach the terminal
        self.process = self.logs.popen(WORKER_COMMAND, self.label, environment, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, bufsize=1)
        self._send(json.dumps({key: value for key, value in job.items() if key != "logs"}))

    def _send(self, line: str) -> None:
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.expect("any")  # the worker is gone: say why

    def _readline(self) -> str:
        return self.process.stdout.readline()

    def failed(self, event: str):
        """The worker has gone: raise why, once it has exited (one that reported a crash but hangs in its teardown,
        waiting for peers that will never answer, is ended)."""
        try:
            code = self.process.wait(timeout=ROOT_CAUSE_WAIT_SECONDS if self.crashed_at else None)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = 1  # it reported its exception: a bug, not a kill from outside
        if code < 0:  # a signal from outside (the out-of-memory killer, a user's kill): not a bug here
            raise UserError(f"the {self.label} worker was killed by {signal.Signals(-code).name} before "
                            f"sending '{event}'; nothing was written (out of memory? see dmesg)")
        raise WorkerFailed(f"the {self.label} worker exited with code {code} before sending '{event}' "
                           f"(its traceback, if any, is above)", self.label)

    def expect(self, event: str) -> dict:
        line = self._readline()
        if not line:
            self.failed(event)
        message = json.loads(line)
        if message["event"] == "error":
            raise UserError(message["message"])
        if message["event"] == "crashed":
            self.crashed_at = message["time"]
            self.failed(event)
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


class RankGroup:
    """A data-parallel twin's ranks as one worker of the schedule: every rank gets each "go" (they train in
    lockstep through their all-reduces), and a block ends when every rank has reported it. The block's time
    is the slowest rank's, its CPU time all ranks' together; the rest is rank 0's report."""

    def __init__(self, job: dict):
        self.job, self.label = job, job["label"]
        ports = free_ports(job["ranks"])
        self.ranks = []
        try:
            for rank in range(job["ranks"]):
                self.ranks.append(Worker({**job, "progress": job["progress"] and rank == 0},
                                         rank_environment(rank, ports), f"{self.label} rank {rank}"))
                self.ranks[-1]._readline = self._reader(self.ranks[-1])
        except BaseException:  # the group is not the caller's yet: stop the ranks already started
            self.stop()
            raise
        self.epoch_seconds, self.waiting_for = 0.0, "ready"

    def _reader(self, worker: Worker):
        """A readline that, while it waits, ends the run as soon as any rank has died: the others would
        wait in their all-reduce until their engine's timeout."""
        worker.lines = queue.Queue()
        threading.Thread(target=lambda: [worker.lines.put(line) for line in iter(worker.process.stdout.readline, "")]
                         + [worker.lines.put("")], daemon=True).start()

        def readline() -> str:
            while True:
                try:
                    return worker.lines.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    for rank in self.ranks:
                        if rank.process.poll() not in (None, 0):
                            self._dead(rank)

        return readline

    def _dead(self, rank: Worker):
        """Raise what a rank that has exited said last: its own error message where it sent one."""
        for message in self._unread(rank):
            if message["event"] == "error":
                raise UserError(message["message"])
        rank.failed(self.waiting_for)

    @staticmethod
    def _unread(rank: Worker) -> list[dict]:
        """The messages of a rank that has exited that were not read yet; a crash's time is kept on the rank."""
        rank.process.wait()
        messages = []
        while (line := rank.lines.get()) != "":  # its reader queues every line, then ""
            messages.append(json.loads(line))
            if messages[-1]["event"] == "crashed":
                rank.crashed_at = messages[-1]["time"]
        rank.lines.put("")  # for whoever reads next
        return messages

    def _from_every_rank(self, event: str, send: str | None = None) -> list[dict]:
        self.waiting_for = event
        try:
            for rank in self.ranks if send else ():
                rank._send(send)
            return [rank.expect(event) for rank in self.ranks]
        except (UserError, WorkerFailed) as failure:
            self._raise_root_cause(failure)

    def _raise_root_cause(self, failure: Exception):
        """One rank's death makes the others fail in their collectives: name a rank killed by a signal (the
        out-of-memory killer, a user's kill) where there is one, else the rank whose bug came first (the others
        crashed on losing it), else the failure seen first."""
        killed = signal_killed([rank.process for rank in self.ranks], ROOT_CAUSE_WAIT_SECONDS)
        if killed is not None:
            self.ranks[killed].failed(self.waiting_for)
        if isinstance(failure, WorkerFailed):
            for rank in self.ranks:
                if rank.process.poll() is not None:
                    self._unread(rank)
            crashed = [rank for rank in self.ranks if rank.crashed_at is not None]
            if crashed:
                min(crashed, key=lambda rank: rank.crashed_at).failed(self.waiting_for)
        raise failure

    def expect(self, event: str) -> dict:
        messages = self._from_every_rank(event)
        first = messages[0]
        if event == "ready":  # the threads of all ranks together, as one process's would be
            first["threads"] = {**first["threads"],
                                "intra_op_threads": sum(m["threads"]["intra_op_threads"] for m in messages)}
        if event == "epoch":
            first["seconds"], self.epoch_seconds = self.epoch_seconds, 0.0
        return first

    def train_block(self) -> dict:
        before = machine.load_reading()
        blocks = self._from_every_rank("block", send="go")
        block = {**blocks[0], "seconds": max(b["seconds"] for b in blocks),
                 "start": min(b["start"] for b in blocks), "end": max(b["end"] for b in blocks),
                 "cpu_seconds": sum(b["cpu_seconds"] for b in blocks),
                 "waiting_cpu_seconds": sum(b["waiting_cpu_seconds"] for b in blocks)}
        block["other_cpu_share"] = machine.other_cpu_share(before, machine.load_reading(), block["cpu_seconds"])
        self.epoch_seconds += block["seconds"]
        return block

    def close(self) -> None:
        for rank in self.ranks:
            rank.process.stdin.close()
        for rank in self.ranks:
            rank.process.wait()

    def stop(self) -> None:
        for rank in self.ranks:
            rank.stop()


def start_worker(job: dict):
    return RankGroup(job) if job.get("ranks", 1) > 1 else Worker(job)


def run_repeat(jobs: list[dict], repeat: int, log=print) -> list[dict]:
    """Train every job's blocks interleaved; return, per job, its ready/block/epoch/done messages.

    After an epoch's last block the worker evaluates (untimed) and reports the epoch before any other
    worker gets "go"; after its last epoch it wraps up (a fit() ending, final predictions) and reports
    "done" first too. Workers exit only after the whole schedule, so no teardown runs inside a timed block."""
    workers, epochs = [], jobs[0]["epochs"]  # every job of a repeat has the same epochs and blocks
    blocks = len(block_ends(jobs[0]["steps_per_epoch"], jobs[0]["block_steps"]))
    logs = childlogs.ChildLogs("twincnn-compare-")
    try:
        for job in jobs:  # start them all; their imports and set-up overlap, their training never does
            workers.append(start_worker({**job, "logs": logs}))
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
    except BaseException as failure:
        for w in workers:  # on any failure or Ctrl-C, no worker survives the parent
            w.stop()
        explain(failure, logs)
        raise
    finally:
        for w in workers:
            w.stop()
        logs.close()
    return [{"ready": r, **timed[w.label], "done": d} for w, r, d in zip(workers, ready, done)]


def explain(failure: BaseException, logs: childlogs.ChildLogs) -> None:
    """Once every worker has ended: show a worker's bug's own traceback, keep what the workers wrote in one file
    and name it in the failure's line. A Ctrl-C keeps nothing: the user stopped the run."""
    if isinstance(failure, KeyboardInterrupt):
        return
    if isinstance(failure, WorkerFailed) and failure.label:
        logs.show(failure.label)
    kept = logs.keep()
    if kept is None:
        return
    if isinstance(failure, (UserError, WorkerFailed)):
        failure.args = (f"{failure}; the workers' output is kept in {kept}",)
    else:  # twincnn's own bug: its traceback follows
        print(f"twincnn: the workers' output is kept in {kept}", file=sys.stderr)
