"""twincnn: one CNN spec, a twin of it in each framework (Keras, PyTorch, Flax), proven equal and timed fairly.

Importing twincnn imports no framework; each backend imports its own.
"""

__version__ = "0.1.0"
