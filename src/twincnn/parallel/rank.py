"""One rank of a data-parallel run.

``python -m twincnn.parallel.rank`` with no arguments reads a job from ``train_ranks`` as one JSON line on
stdin. With arguments it is what a cluster launcher starts in every process (docs/parallel.md's recipes).
Either way the rank's place and rendezvous come from its environment, read by the framework's own resolver
(its parallel module), and it writes rank{RANK}.npz (its final canonical weights) into the folder,
atomically; from the command line also rank{RANK}.json (where it ran and its step times), and rank 0 then
waits for every rank's files and writes summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import backends, data, quiet
from ..errors import UserError
from ..backends.interface import KERAS_ADAM_EPSILON
from ..files import replace_atomically
from ..cli import add_data_options
from ..spec import Spec, default_spec_for
from ..weights import initial_weights, worst_mismatch
from ..zoo import load_spec

GATHER_TIMEOUT_S = 600  # how long rank 0 waits for the other ranks' files on shared storage


PARENT_GONE = threading.Event()  # set before the job folder is removed: a file missing after that is no bug


def exit_when_parent_goes(job_folder: Path) -> None:
    """Standard input closes when the parent ends, however it ends: then this rank ends too, and removes the
    parent's job folder, which a parent killed by a signal could not remove. The parent closes standard input
    only after its ranks have exited, so a live parent's folder is never touched."""
    def watch():
        sys.stdin.read()
        PARENT_GONE.set()
        shutil.rmtree(job_folder, ignore_errors=True)  # the other ranks remove it too
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def wait_for_the_watcher_if_the_parent_went() -> None:
    """Where the rank's work failed because the parent went (its files removed under it), leave the ending to
    the watcher: ending here first would kill the watcher's thread halfway through removing the job folder."""
    if PARENT_GONE.is_set():
        threading.Event().wait()  # the watcher's os._exit ends the process


def train(framework: str, spec: Spec, start: dict, x, y, batches, lr: float, threads: int | None,
          timed: bool = False, eps: float = KERAS_ADAM_EPSILON) -> tuple[dict, dict]:
    """({rank, world, backend, engine, step_seconds}, this rank's canonical weights after one step per global
    batch of ``batches``, Keras's Adam formula with epsilon ``eps``). ``timed``: the wall time of every step
    but the first (compilation, warm-up)."""
    backend, parallel = backends.load(framework), backends.load_parallel(framework)
    group = parallel.initialize(threads)
    completed = False
    try:
        if np.shape(batches)[1] % group["world"]:
            raise UserError(f"a global batch of {np.shape(batches)[1]} cannot be split evenly over {group['world']} "
                            f"ranks; use a batch size that is a multiple of {group['world']}")
        model = parallel.build(spec)
        backend.set_weights(model, spec, start)
        trainer = parallel.make_trainer(model, spec, lr=lr, adam="keras", eps=eps)
        trainer.set_data(x, y)
        seconds = []
        for step, batch in enumerate(batches):
            began = time.perf_counter()
            trainer.step(batch)
            if timed:
                trainer.sync()
                seconds.append(time.perf_counter() - began)
        trainer.sync()
        completed = True
        return {**group, "engine": parallel.ENGINE, "step_seconds": seconds[1:]}, backend.get_weights(model, spec)
    finally:
        parallel.shutdown(completed)  # a rank that failed waits for no other: its error comes first


def save_weights(path: Path, weights: dict) -> None:
    replace_atomically(path, lambda tmp: np.savez(tmp, **weights))  # rank 0 never reads a half-written file


def save_json(path: Path, doc: dict) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))


def from_parent() -> int:
    job = json.loads(sys.stdin.readline())
    folder = Path(job["folder"])
    exit_when_parent_goes(folder)
    try:
        start = dict(np.load(folder / "start.npz"))
        arrays = np.load(folder / "data.npz")
        group, weights = train(job["framework"], Spec.from_dict(job["spec"]), start, arrays["x"], arrays["y"],
                               arrays["batches"], job["lr"], job["threads"], eps=job["eps"])
        save_weights(folder / f"rank{group['rank']}.npz", weights)
    except BaseException:
        wait_for_the_watcher_if_the_parent_went()
        raise
    return 0


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m twincnn.parallel.rank",
                                description="one rank of a data-parallel twin, under a cluster launcher")
    p.add_argument("--framework", required=True)
    p.add_argument("--out", required=True, help="a folder every rank can write to (shared storage across nodes)")
    p.add_argument("--steps", type=int, default=50, help="global batches trained (default 50, at least 2; the "
                                                          "first is untimed)")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch, split evenly over the ranks")
    p.add_argument("--threads", type=int, help="intra-op threads of this rank (default: the framework's)")
    p.add_argument("--seed", type=int, default=0, help="the start weights and the batch order")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--spec", help="a JSON spec file or zoo:NAME (default: the notebook's CNN, built for the data's "
                                  "images and classes)")
    p.add_argument("--data", help="a dataset as `twincnn compare --data` takes (default: bundled MNIST)")
    add_data_options(p)
    return p.parse_args(argv)


def gather(folder: Path, world: int) -> dict:
    """Rank 0: wait for every rank's files, then what they say together."""
    deadline = time.monotonic() + GATHER_TIMEOUT_S
    while not all((folder / f"rank{rank}.json").exists() for rank in range(world)):
        if time.monotonic() > deadline:
            missing = [rank for rank in range(world) if not (folder / f"rank{rank}.json").exists()]
            raise UserError(f"ranks {missing} wrote nothing to {folder} within {GATHER_TIMEOUT_S} s: is --out on "
                            f"storage every node shares?")
        time.sleep(0.2)
    ranks = [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(world)]
    weights = [dict(np.load(folder / f"rank{rank}.npz")) for rank in range(world)]
    differ = [rank for rank in range(1, world) if any(not np.array_equal(weights[rank][k], weights[0][k])
                                                     for k in weights[0])]
    return {"framework": ranks[0]["framework"], "world": world, "engine": ranks[0]["engine"],
            "process_group_backend": ranks[0]["backend"], "hosts": [r["host"] for r in ranks],
            "ranks_identical": not differ, "ranks_that_differ": differ,
            "max_abs_difference_from_rank0": max((worst_mismatch(w, weights[0]).max_abs for w in weights[1:]),
                                                 default=0.0),
            "median_step_seconds": float(np.median(ranks[0]["step_seconds"])) if ranks[0]["step_seconds"] else None}


def from_launcher(argv) -> int:
    args = parse(argv)
    framework = backends.canonical_name(args.framework)
    dataset = data.load(args.data, **data.options(args))
    spec = load_spec(args.spec, dataset.input_shape) if args.spec else \
        default_spec_for(dataset.input_shape, dataset.num_classes)
    data.check_fits(spec, dataset, args.spec or "the notebook's CNN")
    x, y = dataset.images("train"), dataset.labels("train")
    if args.steps < 2:
        raise UserError(f"--steps {args.steps}: at least 2 (the first step is not timed)")
    if args.steps * args.batch_size > len(x):
        raise UserError(f"--steps {args.steps} of {args.batch_size} images need more than the {len(x):,} images")
    batches = np.random.default_rng(args.seed).permutation(len(x))[:args.steps * args.batch_size]
    batches = batches.reshape(args.steps, args.batch_size)
    folder = Path(args.out)
    if any(folder.glob("rank*.json")) or (folder / "summary.json").exists():
        raise UserError(f"{folder} holds an earlier run's files; give every run its own --out")
    folder.mkdir(parents=True, exist_ok=True)
    group, weights = train(framework, spec, initial_weights(spec, args.seed), x, y, batches, args.lr, args.threads,
                           timed=True)
    rank = group["rank"]
    save_weights(folder / f"rank{rank}.npz", weights)
    save_json(folder / f"rank{rank}.json", {**group, "framework": framework, "host": platform.node(),
                                            "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed})
    if rank == 0:
        summary = gather(folder, group["world"])
        save_json(folder / "summary.json", summary)
        print(f"{summary['framework']}: {summary['world']} ranks on {len(set(summary['hosts']))} host(s), "
              f"{summary['engine']} ({summary['process_group_backend']}); ranks identical: "
              f"{summary['ranks_identical']}; median step {summary['median_step_seconds'] * 1e3:.1f} ms; "
              f"wrote {folder / 'summary.json'}")
    return 0


def main(argv=None) -> int:
    quiet.start()  # as the parent or the user's environment decided: no framework's start-up notices
    argv = sys.argv[1:] if argv is None else argv
    try:
        return from_launcher(argv) if argv else from_parent()
    except UserError as exc:
        print(f"twincnn rank: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
