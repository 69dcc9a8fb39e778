"""Importing twincnn (and its CLI, spec, data) must not import TensorFlow or PyTorch."""

import subprocess
import sys


def test_import_is_framework_free():
    code = ("import sys, twincnn, twincnn.cli, twincnn.spec, twincnn.data, twincnn.weights, twincnn.backends;"
            "heavy = [m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"importing twincnn pulled in {result.stdout.strip()}"
