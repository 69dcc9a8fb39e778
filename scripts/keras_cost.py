"""Where Keras's tuned training step spends the time its native framework's does not, on the notebook's CNN:

    python scripts/keras_cost.py torch   # PyTorch's profiler over both steps: ATen operations per step, by kind
    python scripts/keras_cost.py jax     # time per step and the compiled step's operations (optimized HLO), and
                                         # the JAX twin again with max-pools as the spec says (lax.reduce_window)

Both twins take the same batches of 64 MNIST images with Keras's Adam, after 20 warm-up steps; timings are the
minimum and the median of 5 rounds of 100 steps, in this process, nothing else running (docs/results.md).
"""

import collections
import os
import re
import sys
import time

BACKEND = sys.argv[1] if len(sys.argv) > 1 else ""
if BACKEND not in ("torch", "jax"):
    sys.exit("usage: python scripts/keras_cost.py torch|jax")
os.environ["KERAS_BACKEND"] = BACKEND  # before Keras starts: Keras reads it once per process

import numpy as np  # noqa: E402

from twincnn import backends, data  # noqa: E402
from twincnn.spec import DEFAULT_SPEC  # noqa: E402

STEPS, ROUNDS, WARM_UP = 100, 5, 20
mnist = data.load()
X, Y = mnist.images("train")[:6400], mnist.labels("train")[:6400]
ORDER = np.random.default_rng(0).permutation(len(X))


def batch(step: int) -> np.ndarray:
    start = step % (len(X) // 64) * 64
    return np.asarray(ORDER[start:start + 64], np.int32)


def tuned_trainer(name: str):
    twin = backends.load(name)
    trainer = twin.make_trainer(twin.build(DEFAULT_SPEC, seed=0), DEFAULT_SPEC, lr=1e-3, adam="keras",
                                variant="tuned")
    trainer.set_data(X, Y)
    for step in range(WARM_UP):
        trainer.step(batch(step))
    trainer.sync()
    return trainer


def ms_per_step(trainer) -> str:
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for step in range(STEPS):
            trainer.step(batch(step))
        trainer.sync()
        rounds.append((time.perf_counter() - start) / STEPS * 1e3)
    return f"{min(rounds):.1f} ms/step (median {np.median(rounds):.1f})"


# ATen operations by what they do; the rest is "other"
KINDS = {"convolution": ("aten::mkldnn_convolution", "aten::convolution_backward"),
         "copies (layout changes)": ("aten::copy_", "aten::permute", "aten::contiguous", "aten::clone"),
         "max-pool": ("aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward"),
         "ReLU": ("aten::clamp_min", "aten::threshold_backward", "aten::relu"),
         "bias gradients (sums)": ("aten::sum",)}


def torch_profile() -> None:
    from torch.profiler import ProfilerActivity, profile

    for name in ("torch", "keras-torch"):
        trainer = tuned_trainer(name)
        print(f"{name}: {ms_per_step(trainer)}")
        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            for step in range(STEPS):
                trainer.step(batch(step))
            trainer.sync()
        events = profiled.key_averages()
        per_step = collections.Counter()
        for event in events:
            kind = next((k for k, ops in KINDS.items() if event.key in ops), "other")
            per_step[kind] += event.self_cpu_time_total / STEPS / 1e3
        print(f"  {sum(e.count for e in events) / STEPS:.0f} operations per step; their own time per step:",
              ", ".join(f"{kind} {ms:.1f} ms" for kind, ms in per_step.most_common()))


def jax_profile() -> None:
    import jax.numpy as jnp

    def operations(compiled) -> dict:
        counts = collections.Counter(re.findall(r"=\s+\S+\s+([a-z][a-z\-]*)\(", compiled.as_text()))
        return {op: counts[op] for op in ("convolution", "transpose", "copy", "fusion", "reduce-window")}

    native = tuned_trainer("jax")
    print(f"jax: {ms_per_step(native)}; compiled step:",
          operations(native._step.lower(native.params, native.opt_state, native.rest, native.x, native.y,
                                        batch(0)).compile()))
    keras = tuned_trainer("keras-jax")
    print(f"keras-jax: {ms_per_step(keras)}; compiled step:",
          operations(keras._step.lower(keras.state, keras.x, keras.y, jnp.asarray(batch(0))).compile()))
    jax_twin = backends.load("jax")
    jax_twin.TwinNet.use_tuned_plan = lambda self, tuned=True: None  # the spec's max-pools in the step too
    spec_pools = tuned_trainer("jax")
    print(f"jax with the spec's max-pools in its step: {ms_per_step(spec_pools)}; compiled step:",
          operations(spec_pools._step.lower(spec_pools.params, spec_pools.opt_state, spec_pools.rest,
                                            spec_pools.x, spec_pools.y, batch(0)).compile()))


if __name__ == "__main__":
    torch_profile() if BACKEND == "torch" else jax_profile()
