"""Train one twin under a protocol and measure it. Only training is timed; evaluation is not.

fair:     shared initial weights (NumPy Glorot), shared batches (one permutation per epoch),
          Keras's Adam update in both, equal thread counts.
notebook: what the notebook did: each framework's own initialisers, Adam and shuffling; Keras fit()
          with accuracy metric and a validation pass every epoch *inside* the timing; an eager PyTorch loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import backends
from ..progress import Progress
from ..spec import Spec
from ..weights import initial_weights


@dataclass(frozen=True)
class Config:
    protocol: str = "fair"
    variant: str = "tuned"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 42
    threads: int | None = None
    device: str = "cpu"
    progress: bool = True


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy from logits, computed stably in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def train_one(name: str, spec: Spec, dataset, config: Config, seed: int) -> dict:
    backend = backends.load(name)
    threads = backend.configure(config.threads)
    x_train, y_train = dataset.images("train"), dataset.labels("train")
    x_test, y_test = dataset.images("test"), dataset.labels("test")
    fair = config.protocol == "fair"
    model = backend.build(spec, seed=seed, device=config.device)
    if fair:
        backend.set_weights(model, spec, initial_weights(spec, seed))
    variant = config.variant if fair else "idiomatic"
    notebook_tf = not fair and name == "tensorflow"
    trainer = backend.make_trainer(model, spec, lr=config.lr, adam="keras" if fair else "native",
                                   variant=variant, device=config.device, seed=seed,
                                   metrics=["accuracy"] if notebook_tf else ())
    trainer.set_data(x_train, y_train)

    n = len(x_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    rng = np.random.default_rng(seed)
    history = {"epoch_seconds": [], "train_loss": [], "test_loss": [], "test_accuracy": []}
    step_seconds: list[float] = []
    logits = None
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(n) if fair else None  # notebook: the framework shuffles itself
        bar = Progress(f"{name} epoch {epoch}/{config.epochs}", steps_per_epoch, enabled=config.progress)
        clock = [0.0]

        def on_step(done, bar=bar, clock=clock):
            now = time.perf_counter()
            step_seconds.append(now - clock[0])
            clock[0] = now
            bar.update(done)

        start = clock[0] = time.perf_counter()
        train_loss = trainer.train_epoch(order, config.batch_size, on_step,
                                         validation=(x_test, y_test) if notebook_tf else None)
        trainer.sync()
        seconds = time.perf_counter() - start
        # -- untimed from here: evaluation for the per-epoch curves
        logits = trainer.predict(x_test)
        accuracy = float((logits.argmax(1) == y_test).mean())
        history["epoch_seconds"].append(seconds)
        history["train_loss"].append(float(train_loss))
        history["test_loss"].append(cross_entropy(logits, y_test))
        history["test_accuracy"].append(accuracy)
        bar.close(seconds, f"loss {train_loss:.4f}  test acc {accuracy:.2%}")

    total = sum(history["epoch_seconds"])
    epochs = history["epoch_seconds"]
    return {
        "framework": name,
        "seed": seed,
        "variant": variant,
        "threads": threads,
        "train_seconds": total,
        "first_epoch_seconds": epochs[0],
        "later_epoch_seconds": float(np.mean(epochs[1:])) if len(epochs) > 1 else None,
        "median_step_ms": float(np.median(step_seconds) * 1e3),
        "images_per_second": n * config.epochs / total,
        "steps": len(step_seconds),
        "test_accuracy": history["test_accuracy"][-1],
        "test_loss": history["test_loss"][-1],
        "history": history,
        "predictions": logits.argmax(1),
    }
