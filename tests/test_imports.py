"""Importing twincnn (and its CLI, spec, data, weights files) must not import any framework."""

import subprocess
import sys


def test_import_is_framework_free():
    code = ("import sys, twincnn, twincnn.cli, twincnn.spec, twincnn.data, twincnn.weights, twincnn.backends,"
            " twincnn.backends.interface;"
            "heavy = [m for m in ('tensorflow', 'torch', 'keras', 'jax', 'jaxlib', 'flax', 'optax') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"importing twincnn pulled in {result.stdout.strip()}"
