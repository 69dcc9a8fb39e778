"""One framework, one training run, in its own process: `python -m twincnn.compare.worker`.

The parent (compare/workers.py) sends one JSON job on stdin, then a line "go" before each block of
steps; the worker imports only its own framework, prepares everything untimed, and answers with JSON lines:
  {"event": "ready", ...}         set up, waiting for the first "go"
  {"event": "block", ...}         one block's timestamps, seconds and CPU seconds (the answer to each "go")
  {"event": "epoch", ...}         after an epoch's last block: its seconds and untimed evaluation
  {"event": "done", ...}          final predictions, after the trainer has wrapped up
  {"event": "error", "message"}   bad input (a missing framework, no GPU): one line for the user
  {"event": "crashed", "time"}    a bug, on its way out: its traceback follows on stderr
Anything a framework prints goes to stderr, so stdout carries only these messages. After "done" the
worker stays alive and idle until the parent closes stdin, which it does once the whole schedule has run:
no worker's exit (interpreter and framework teardown) runs while another worker's epoch is timed.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

from .. import backends, data, weightsfile
from ..allocator import keep_freed_memory
from ..errors import UserError
from ..progress import Progress
from ..spec import Spec
from .schedule import block_ends
from ..weights import digest, initial_weights


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy from logits, computed stably in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


class Channel:
    """JSON lines to the parent on a private copy of stdout; "go" lines from the parent on stdin."""

    def __init__(self):
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # whatever else writes to stdout (a framework, a library) lands on stderr

    def send(self, event: str, **fields) -> None:
        self.out.write(json.dumps({"event": event, **fields}, default=_jsonable) + "\n")

    @staticmethod
    def wait_for_go() -> float:
        """Block until "go"; return the CPU seconds this process used meanwhile (threads that prepare data
        or spin while another worker is timed: it should be ~0)."""
        before = time.process_time()
        line = sys.stdin.readline()
        if line.strip() != "go":  # the parent closed the pipe or was interrupted: stop quietly
            raise SystemExit(0)
        return time.process_time() - before

    @staticmethod
    def wait_for_close() -> None:
        """Stay idle until the parent closes stdin at the end of the schedule."""
        sys.stdin.read()


def major_page_faults() -> int:
    """Page faults of this process that read memory back from disk (its pages were reclaimed meanwhile)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class EpochClock:
    """The trainer's hooks: wait for the scheduler before each block of steps, time the block, evaluate
    untimed after each epoch, report.

    An epoch is cut into blocks (compare/schedule.py: block_ends); after each block but the last the
    worker synchronises the device, stops its clock, reports the block and waits for its next "go", so
    the workers take turns block by block. An epoch's time is the sum of its blocks'."""

    def __init__(self, channel, trainer, job, x_test, y_test):
        self.channel, self.trainer, self.job = channel, trainer, job
        self.x_test, self.y_test = x_test, y_test
        self.steps_per_epoch = job["steps_per_epoch"]
        self.pauses = set(block_ends(self.steps_per_epoch, job["block_steps"])[:-1])
        # per-step times are reported on a CPU only (see epoch_end), so only there is each step's CPU read
        self.cpu_steps = job["device"] == "cpu"
        self.logits = None

    def epoch_start(self, epoch: int) -> None:
        self.epoch, self.blocks = epoch, []
        self.bar = Progress(f"{self.job['label']} epoch {epoch}/{self.job['epochs']}", self.steps_per_epoch,
                            enabled=self.job["progress"])
        self.step_seconds, self.step_cpu_seconds = [], []
        self._start_block()

    def _start_block(self) -> None:
        self.waiting_cpu_seconds = self.channel.wait_for_go()
        self.faults_start = major_page_faults()
        self.wall_start = time.time()
        self.cpu_start = self.last_cpu = time.process_time()
        self.start = self.last = time.perf_counter()

    def _end_block(self, done: int) -> dict:
        seconds = time.perf_counter() - self.start  # the device has been synchronised
        block = {"epoch": self.epoch, "block": len(self.blocks) + 1, "seconds": seconds, "start": self.wall_start,
                 "end": time.time(), "cpu_seconds": time.process_time() - self.cpu_start,
                 "steps": done - sum(b["steps"] for b in self.blocks),
                 "waiting_cpu_seconds": self.waiting_cpu_seconds,
                 "major_page_faults": major_page_faults() - self.faults_start}
        self.blocks.append(block)
        self.channel.send("block", **block)
        return block

    def step(self, done: int) -> None:
        now = time.perf_counter()
        self.step_seconds.append(now - self.last)
        self.last = now
        if self.cpu_steps:
            cpu = time.process_time()
            self.step_cpu_seconds.append(cpu - self.last_cpu)
            self.last_cpu = cpu
        self.bar.update(done)
        if done in self.pauses:  # a block ends inside the epoch: hand the CPU to the next worker
            self.trainer.sync()
            self._end_block(done)
            self.bar.pause()
            self._start_block()
            self.bar.resume()

    def epoch_end(self, epoch: int, train_loss: float) -> None:
        if len(self.blocks) != len(self.pauses):  # the parent's schedule expects a block at every boundary
            raise RuntimeError(f"the {self.job['label']} trainer reported {len(self.blocks)} of {len(self.pauses)} "
                               f"block boundaries in epoch {epoch}: it does not call its step hook after every step")
        self._end_block(self.steps_per_epoch)  # the trainer has synchronised the device already
        seconds = sum(b["seconds"] for b in self.blocks)
        # -- untimed from here: evaluation for the per-epoch curves
        self.logits = self.trainer.predict(self.x_test)
        accuracy = float((self.logits.argmax(1) == self.y_test).mean())
        test_loss = cross_entropy(self.logits, self.y_test)
        self.bar.close(seconds, f"loss {train_loss:.4f}  test acc {accuracy:.2%}")
        # Per-step times are read after a host-side return; on an asynchronous device they measure
        # queueing, not work, so only the epoch time (taken after a synchronisation) is reported there.
        steps = self.step_seconds if self.cpu_steps else []
        slowest = int(np.argmax(steps)) if steps else None
        self.channel.send("epoch", epoch=epoch, seconds=seconds, steps=len(self.step_seconds),
                          median_step_seconds=float(np.median(steps)) if steps else None,
                          # where a slow epoch's time went: one step (its CPU time says whether it worked or
                          # waited), or outside the steps (a validation pass, a framework's work between epochs)
                          slowest_step=([slowest + 1, steps[slowest], self.step_cpu_seconds[slowest]]
                                        if steps else None),
                          outside_steps_seconds=seconds - sum(steps) if steps else None,
                          major_page_faults=sum(b["major_page_faults"] for b in self.blocks),
                          train_loss=float(train_loss), test_loss=test_loss, test_accuracy=accuracy)


def run_job(job: dict, channel: Channel) -> None:
    backend = backends.load(job["framework"])
    backend.resolve_device(job["device"])
    # One rank of a data-parallel twin builds and trains through its framework's parallel module.
    parallel = backends.load_parallel(job["framework"]) if job.get("ranks", 1) > 1 else None
    group = parallel.initialize(job["threads"]) if parallel else None  # before the framework's first operation
    threads = backend.configure(None if parallel else job["threads"])
    twin = parallel or backend
    dataset = data.load(job["data"], **job.get("data_options", {}))
    if job.get("subset"):
        dataset = dataset.subset(*job["subset"])
    spec = Spec.from_dict(job["spec"])
    x_train, y_train = dataset.images("train"), dataset.labels("train")
    x_test, y_test = dataset.images("test"), dataset.labels("test")
    fair = job["protocol"] == "fair"
    seed = job["seed"]
    model = twin.build(spec, seed=seed, device=job["device"])
    start = None  # the framework's own initial weights (the notebook protocol)
    if job.get("initial_weights"):  # the user's model's own weights (--keep-weights), in every repeat
        start = weightsfile.load(job["initial_weights"], spec)[0]
    elif fair:
        start = initial_weights(spec, seed)
    if start is not None:
        backend.set_weights(model, spec, start)
    validates = not fair and backend.NOTEBOOK_VALIDATION  # the notebook validated inside Keras's timing
    trainer = twin.make_trainer(model, spec, lr=job["lr"], adam="keras" if fair else "native",
                                   variant=job["variant"], device=job["device"], seed=seed,
                                   metrics=["accuracy"] if validates else ())
    trainer.set_data(x_train, y_train)
    n = len(x_train)
    rng = np.random.default_rng(seed)
    # Fair: one shared permutation per epoch, drawn before the clock starts. Notebook: the framework's own.
    orders = [rng.permutation(n) for _ in range(job["epochs"])] if fair else None

    environment = {**backend.environment(), **({"ranks": group["world"], "rank": group["rank"],
                                                 "process_group_backend": group["backend"],
                                                 "engine": parallel.ENGINE} if parallel else {})}
    channel.send("ready", threads=threads, environment=environment, pid=os.getpid(),
                 start_weights_sha256=digest(start) if start is not None else None,
                 timing_includes="" if fair else backend.NOTEBOOK_TIMING)
    clock = EpochClock(channel, trainer, job, x_test, y_test)
    trainer.run(job["epochs"], job["batch_size"], lambda epoch: orders[epoch - 1] if orders else None, clock,
                validation=(x_test, y_test) if validates else None)
    channel.send("done", predictions=clock.logits.argmax(1))
    channel.wait_for_close()


def main() -> int:
    keep_freed_memory()  # first: every run gets the same heap behaviour
    import contextlib

    from .. import quiet

    quiet.start()  # as the parent decided (inherited): no framework's start-up notices
    channel = Channel()
    try:
        run_job(json.loads(sys.stdin.readline()), channel)
    except UserError as exc:
        channel.send("error", message=str(exc))
        return 2
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        return 130
    except Exception:  # a bug: its traceback follows on stderr; the time tells which rank of a group failed first
        with contextlib.suppress(OSError):
            channel.send("crashed", time=time.time())
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
