"""Time JAX's tuned loop two ways in one process: one jitted call per step, or an epoch's full batches in
one jitted lax.scan over the same pure step (the tuned trainer's ``epoch_scan``). Epochs alternate
A B B A ... so drift hits both alike; the first epoch of each (compilation) is left out of the ratio. After a
few steps both must hold the same weights: the scan is the same steps, only dispatched at once.

    PYTHONPATH=src python scripts/jax_scan_vs_step.py [--device cpu|cuda] [--epochs 4] [--rows 60000]
"""

import argparse
import time

import jax
import numpy as np

from twincnn import data, stats
from twincnn.backends import jax as jb
from twincnn.spec import DEFAULT_SPEC as SPEC
from twincnn.weights import initial_weights, worst_mismatch

BATCH = 64
MODES = {"step": False, "scan": True}


def trainer_for(x, y, device, mode):
    model = jb.build(SPEC, seed=0, device=device)
    jb.set_weights(model, SPEC, initial_weights(SPEC, 42))
    trainer = jb.make_trainer(model, SPEC, variant="tuned", device=device, epoch_scan=MODES[mode])
    trainer.set_data(x, y)
    return trainer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    jb.configure(args.threads)
    ds = data.load()
    x, y = ds.images("train")[:args.rows], ds.labels("train")[:args.rows]

    # the same 5 steps both ways first: the scan must be the same training
    order = np.arange(5 * BATCH)
    w = {}
    for mode in MODES:
        trainer = trainer_for(x, y, args.device, mode)
        trainer.train_epoch(order, BATCH)
        w[mode] = jb.get_weights(trainer.model, SPEC)
    print("weights after 5 steps, scan vs step:", worst_mismatch(w["scan"], w["step"]), flush=True)

    trainers = {mode: trainer_for(x, y, args.device, mode) for mode in MODES}
    times = {mode: [] for mode in MODES}
    for epoch in range(args.epochs):
        order = np.random.default_rng(epoch).permutation(len(x))
        for mode in (("step", "scan") if epoch % 2 == 0 else ("scan", "step")):
            start = time.perf_counter()
            loss = trainers[mode].train_epoch(order, BATCH)
            trainers[mode].sync()
            times[mode].append(time.perf_counter() - start)
            print(f"epoch {epoch + 1} {mode}: {times[mode][-1]:.3f} s, loss {loss:.4f}", flush=True)

    steady = {mode: t[1:] for mode, t in times.items()}
    print({mode: f"median {np.median(t):.3f} s" for mode, t in steady.items()}, jax.devices()[0].platform)
    if len(steady["scan"]) >= 2:
        print(stats.judge("step", "scan", stats.ratio_interval([stats.log_ratios(steady["step"], steady["scan"])])).text)


if __name__ == "__main__":
    main()
