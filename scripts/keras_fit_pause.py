"""Keras's fit() alone, pausing in on_epoch_begin before each epoch (as a compare worker waits for its turn in
the notebook protocol): each epoch's time, its first step's wall and CPU time (the step in which fit() frees
the previous epoch's tf.data iterator), its median step and the major page faults (memory read back from
disk) the process took during it. A first step with far more wall than CPU time waited; to see on what,
run `gdb -p PID -batch -ex "thread apply all bt"` while it waits.

    PYTHONPATH=src python scripts/keras_fit_pause.py [--pauses 0,0,0,60,60] [--rows 60000]
"""

import argparse
import time

import numpy as np

from twincnn import backends, data
from twincnn.compare.worker import major_page_faults
from twincnn.spec import DEFAULT_SPEC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pauses", default="0,0,0,60,60", help="seconds to pause before each epoch")
    parser.add_argument("--rows", type=int, default=60000, help="training images per epoch")
    args = parser.parse_args()
    pauses = [float(p) for p in args.pauses.split(",")]
    twin = backends.load("tensorflow")
    twin.configure(2)
    import keras

    dataset = data.load()
    model = twin.build(DEFAULT_SPEC, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Pause(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            time.sleep(pauses[epoch])
            self.start = self.last = time.perf_counter()
            self.cpu = time.process_time()
            self.faults = major_page_faults()
            self.steps = []

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if not self.steps:
                self.first_cpu = time.process_time() - self.cpu
            self.steps.append(now - self.last)
            self.last = now

        def on_epoch_end(self, epoch, logs=None):
            faults = major_page_faults() - self.faults
            print(f"epoch {epoch + 1} after a {pauses[epoch]:g} s pause: {time.perf_counter() - self.start:.2f} s, "
                  f"first step {self.steps[0]:.2f} s ({self.first_cpu:.2f} s of CPU), "
                  f"median step {np.median(self.steps) * 1e3:.1f} ms, "
                  f"major page faults {faults}", flush=True)

    model.fit(dataset.images("train")[:args.rows], dataset.labels("train")[:args.rows], batch_size=64,
              epochs=len(pauses), shuffle=True, verbose=0, callbacks=[Pause()],
              validation_data=(dataset.images("test")[:2000], dataset.labels("test")[:2000]))


if __name__ == "__main__":
    main()
