"""`twincnn compare`: train the twins under one protocol, each in its own process, and judge the speed.

fair (default): shared initial weights (NumPy Glorot), shared batches (one permutation per epoch, drawn
          before the clock starts), Keras's Adam update in every framework, equal thread counts.
notebook: what the notebook did: each framework's own initialisers, Adam and shuffling; Keras fit()
          with the accuracy metric and a validation pass every epoch *inside* the timing.

command.py reads the options; workers.py runs worker.py processes in schedule.py's interleaved order;
figures.py turns their messages into runs, medians and verdicts (stats.py); output.py writes the table,
results.json and report.md atomically; plots.py draws the figures; report.py merges results directories.
"""
