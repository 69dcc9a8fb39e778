"""Start R rank processes, wait for all of them, and stop all of them the moment one fails.

What the ranks write goes to log files (childlogs.py): a failure ends in one line naming the rank that failed
first, after that rank's own output where it exited with an error, and the file that keeps every rank's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import backends
from ..childlogs import ChildLogs
from ..backends.interface import KERAS_ADAM_EPSILON
from ..errors import UserError
from ..spec import Spec

RANK_COMMAND = [sys.executable, "-m", "twincnn.parallel.rank"]
RENDEZVOUS_TIMEOUT_S = 60  # each engine's own wait for all ranks to join
POLL_S = 0.05
ROOT_CAUSE_WAIT_S = 1.0


def free_ports(count: int) -> list[int]:
    """Ports the operating system has just handed out, all different (never fixed numbers that a second run
    would collide with)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def rank_environment(rank: int, ports: list[int]) -> dict:
    """The launcher variables cluster tools set for each process (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*), and a
    port per rank for engines whose every worker listens; TWINCNN_RANK_PORTS marks twincnn as the launcher."""
    return {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(len(ports)), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(len(ports)), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(ports[0]),
            "TWINCNN_RANK_PORTS": ",".join(map(str, ports)),
            "TWINCNN_RENDEZVOUS_TIMEOUT_S": str(RENDEZVOUS_TIMEOUT_S)}


def split_evenly(batches: np.ndarray, world: int) -> None:
    """Refuse a global batch the ranks cannot share equally: a mean over unequal slices is not the mean."""
    if batches.shape[1] % world:
        raise UserError(f"a global batch of {batches.shape[1]} cannot be split evenly over {world} ranks; "
                        f"use a batch size that is a multiple of {world}")


def _failure(label: str, rank: int, code: int) -> str:
    if code < 0:
        return (f"rank {rank} of the {label} run was killed by {signal.Signals(-code).name}; the other ranks were "
                f"stopped")
    return (f"rank {rank} of the {label} run exited with code {code}; the other ranks were stopped (its output, if "
            f"any, is above)")


def rank_label(rank: int) -> str:
    return f"rank {rank}"


def wait_all(processes: list, label: str, timeout: float, started: float, logs: ChildLogs) -> None:
    """Return when every rank has exited 0; otherwise stop them all and raise one line naming the rank that failed
    first (its own output shown above it where it exited with an error) and where ``logs`` keeps every rank's."""
    while True:
        codes = [process.poll() for process in processes]
        if any(code not in (None, 0) for code in codes):
            killed = signal_killed(processes, ROOT_CAUSE_WAIT_S)
            failed = [rank for rank, process in enumerate(processes) if process.poll() not in (None, 0)]
            # of ranks that failed within one poll, the one whose log ends first: the others wrote its loss after
            rank = killed if killed is not None else min(failed, key=lambda r: logs.last_written(rank_label(r)))
            code = processes[rank].poll()
            stop_all(processes)
            if code > 0:
                logs.show(rank_label(rank))
            raise UserError(_with_logs(_failure(label, rank, code), logs))
        if all(code == 0 for code in codes):
            return
        if time.monotonic() - started > timeout:
            waiting = [rank for rank, code in enumerate(codes) if code is None]
            stop_all(processes)
            raise UserError(_with_logs(
                f"the {label} run did not finish within {timeout:.0f} s (ranks {waiting} still running: a rank that "
                f"cannot join or hangs); all ranks were stopped; give a longer timeout if it is only slow", logs))
        time.sleep(POLL_S)


def _with_logs(message: str, logs: ChildLogs) -> str:
    kept = logs.keep()
    return message if kept is None else f"{message}; the ranks' output is kept in {kept}"


def signal_killed(processes: list, seconds: float) -> int | None:
    """One rank's death makes the others fail in their collectives: give them up to ``seconds`` to end, then
    the index of a process a signal killed (the out-of-memory killer, a user's kill), the root cause, if any."""
    deadline = time.monotonic() + seconds
    while any(process.poll() is None for process in processes) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return next((index for index, process in enumerate(processes) if (process.poll() or 0) < 0), None)


def stop_all(processes: list) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait()
        if process.stdin:
            process.stdin.close()


def train_ranks(framework: str, spec: Spec, weights: dict, x: np.ndarray, y: np.ndarray, batches: np.ndarray,
                world: int, lr: float = 1e-3, threads: int = 1, timeout: float = 600,
                on_start=None, eps: float = KERAS_ADAM_EPSILON) -> list[dict]:
    """Train ``world`` ranks data-parallel on ``batches`` (steps x global batch row indices) from ``weights``
    with Keras's Adam formula (epsilon ``eps``); every rank's final canonical weights, by rank.

    ``on_start(processes)`` is called once all ranks are started (tests kill one there). Each rank exits when
    its standard input closes, so no rank outlives this process, whatever ends it.
    """
    backends.parallel_module(framework)  # refused here, in one line, where it has none or is not installed
    label = backends.BACKENDS[backends.canonical_name(framework)].label
    batches = np.asarray(batches, np.int64)
    split_evenly(batches, world)
    with tempfile.TemporaryDirectory(prefix="twincnn-ranks-") as folder, ChildLogs("twincnn-ranks-") as logs:
        folder = Path(folder)
        np.savez(folder / "start.npz", **weights)
        np.savez(folder / "data.npz", x=x, y=y, batches=batches)
        job = {"framework": framework, "spec": spec.to_dict(), "folder": str(folder), "lr": lr, "eps": eps,
               "threads": threads}
        ports, processes = free_ports(world), []
        started = time.monotonic()
        try:
            for rank in range(world):
                processes.append(logs.popen(RANK_COMMAND, rank_label(rank), rank_environment(rank, ports),
                                            stdin=subprocess.PIPE, text=True))
                processes[-1].stdin.write(json.dumps(job) + "\n")
                processes[-1].stdin.flush()
            if on_start is not None:
                on_start(processes)
            wait_all(processes, label, timeout, started, logs)
        finally:
            stop_all(processes)
        return [dict(np.load(folder / f"rank{rank}.npz")) for rank in range(world)]
