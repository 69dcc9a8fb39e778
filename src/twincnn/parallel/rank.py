"""One rank of a data-parallel run: ``python -m twincnn.parallel.rank``, the job as one JSON line on stdin.

The rank's identity and rendezvous come from the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, or
a framework's own launcher variables), read by the framework's own resolver in its parallel module. It
writes rank{RANK}.npz (its final canonical weights) into the job's folder, atomically.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import numpy as np

from .. import backends
from ..spec import Spec


def exit_when_parent_goes() -> None:
    """Standard input closes when the parent ends, however it ends: then this rank ends too."""
    def watch():
        sys.stdin.read()
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def train(framework: str, spec: Spec, start: dict, x, y, batches, lr: float, threads: int) -> tuple[int, dict]:
    """(this rank, its canonical weights after one step per global batch of ``batches``)."""
    backend, parallel = backends.load(framework), backends.load_parallel(framework)
    rank = parallel.initialize(threads)["rank"]
    try:
        model = parallel.build(spec)
        backend.set_weights(model, spec, start)
        trainer = parallel.make_trainer(model, spec, lr=lr, adam="keras")
        trainer.set_data(x, y)
        for batch in batches:
            trainer.step(batch)
        trainer.sync()
        return rank, backend.get_weights(model, spec)
    finally:
        parallel.shutdown()


def main() -> int:
    job = json.loads(sys.stdin.readline())
    exit_when_parent_goes()
    folder = job["folder"]
    start = dict(np.load(os.path.join(folder, "start.npz")))
    data = np.load(os.path.join(folder, "data.npz"))
    rank, weights = train(job["framework"], Spec.from_dict(job["spec"]), start, data["x"], data["y"],
                          data["batches"], job["lr"], job["threads"])
    partial = os.path.join(folder, f".rank{rank}.npz")
    np.savez(partial, **weights)
    os.replace(partial, os.path.join(folder, f"rank{rank}.npz"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
