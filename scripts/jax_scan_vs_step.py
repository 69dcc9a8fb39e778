"""Time JAX's tuned loop two ways in one process: one jitted call per step (what the tuned trainer does), or
an epoch's batches in one jitted lax.scan over the same pure step. Epochs alternate A B B A ... so drift hits
both alike; the first epoch of each (compilation) is left out of the ratio. After a few steps both must hold
the same weights (the scan is the same steps, only dispatched at once; float rounding may differ).

    PYTHONPATH=src python scripts/jax_scan_vs_step.py [--device cpu|cuda] [--epochs 4] [--rows 60000]
"""

import argparse
import time

import jax
import numpy as np
from flax import nnx

from twincnn import data, stats
from twincnn.backends import jax as jb
from twincnn.spec import DEFAULT_SPEC as SPEC
from twincnn.weights import initial_weights, worst_mismatch

BATCH = 64


def trainer_for(x, y, device):
    model = jb.build(SPEC, seed=0, device=device)
    jb.set_weights(model, SPEC, initial_weights(SPEC, 42))
    trainer = jb.make_trainer(model, SPEC, variant="tuned", device=device)
    trainer.set_data(x, y)
    return trainer


def scan_epoch_for(trainer):
    step = jb.pure_step(nnx.split(trainer.model, nnx.Param, ...)[0], trainer.tx)

    def epoch(params, opt_state, rest, x, y, batches):
        def body(carry, idx):
            *carry, loss = step(*carry, x, y, idx)
            return tuple(carry), loss

        return jax.lax.scan(body, (params, opt_state, rest), batches)

    jitted = jax.jit(epoch, donate_argnums=(0, 1, 2))

    def run(order):
        (trainer.params, trainer.opt_state, trainer.rest), losses = jitted(
            trainer.params, trainer.opt_state, trainer.rest, trainer.x, trainer.y, order.reshape(-1, BATCH))
        nnx.update(trainer.model, trainer.params, trainer.rest)
        return float(np.mean(jax.device_get(losses)))

    return run


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    jb.configure(args.threads)
    rows = args.rows // BATCH * BATCH  # full batches only, so both modes do the same steps
    ds = data.load()
    x, y = ds.images("train")[:rows], ds.labels("train")[:rows]

    # the same 5 steps both ways first: the scan must be the same training
    check = {"step": trainer_for(x, y, args.device), "scan": trainer_for(x, y, args.device)}
    order = np.arange(5 * BATCH, dtype=np.int32)
    check["step"].train_epoch(order, BATCH)
    scan_epoch_for(check["scan"])(order)
    w = {mode: jb.get_weights(t.model, SPEC) for mode, t in check.items()}
    print("weights after 5 steps, scan vs step:", worst_mismatch(w["scan"], w["step"]), flush=True)

    trainers = {"step": trainer_for(x, y, args.device), "scan": trainer_for(x, y, args.device)}
    epoch_of = {"step": lambda o: trainers["step"].train_epoch(o, BATCH), "scan": scan_epoch_for(trainers["scan"])}
    times = {"step": [], "scan": []}
    for epoch in range(args.epochs):
        order = np.random.default_rng(epoch).permutation(rows).astype(np.int32)
        for mode in (("step", "scan") if epoch % 2 == 0 else ("scan", "step")):
            start = time.perf_counter()
            loss = epoch_of[mode](order)
            trainers[mode].sync()
            times[mode].append(time.perf_counter() - start)
            print(f"epoch {epoch + 1} {mode}: {times[mode][-1]:.3f} s, loss {loss:.4f}", flush=True)

    steady = {mode: t[1:] for mode, t in times.items()}
    print({mode: f"median {np.median(t):.3f} s" for mode, t in steady.items()}, jax.devices()[0].platform)
    if len(steady["scan"]) >= 2:
        print(stats.judge("step", "scan", stats.ratio_interval([stats.log_ratios(steady["step"], steady["scan"])])).text)


if __name__ == "__main__":
    main()
