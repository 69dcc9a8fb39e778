"""twincnn: one CNN spec, a Keras twin and a PyTorch twin, proven equal and timed fairly.

Importing twincnn imports neither TensorFlow nor PyTorch; each backend imports its own.
"""

__version__ = "0.1.0"
