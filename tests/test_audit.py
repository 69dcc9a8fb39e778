"""`twincnn audit` reads the defaults from the installed frameworks."""

from twincnn.audit import audit_rows
from twincnn.cli import main


def test_audit_names_the_known_differences(both, capsys):
    assert main(["audit"]) == 0
    out = capsys.readouterr().out
    rows = {r[0]: r for r in audit_rows()}
    assert rows["Adam epsilon"][1:3] == ["1e-07", "1e-08"]
    assert rows["conv kernel initialiser"][1] == "GlorotUniform"
    assert rows["conv kernel initialiser"][2].startswith("kaiming_uniform_")
    assert rows["bias initialiser"][1] == "Zeros"
    assert rows["default conv padding"][1:3] == ["Conv2D(padding='valid')", "Conv2d(padding=0)"]
    for setting in ("data order", "intra-op threads", "TF32", "deterministic ops", "per-epoch extras"):
        assert setting in out


def test_audit_reads_flax_and_optax(capsys):
    """The JAX column: the defaults the JAX twin must override (padding, pool strides) and optax's Adam."""
    from conftest import require

    require("jax")
    rows = {r[0]: r for r in audit_rows()}
    assert main(["audit"]) == 0 and "JAX/Flax default" in capsys.readouterr().out
    assert rows["Adam epsilon"][3] == "1e-08"
    assert rows["conv kernel initialiser"][3].startswith("lecun_normal")
    assert rows["bias initialiser"][3] == "zeros"
    assert rows["default conv padding"][3] == "nnx.Conv(padding='SAME')"
    assert rows["default max-pool strides"][3].endswith("= 1 (overlapping windows)")
    assert rows["float precision on GPUs (TF32)"][3].startswith("jax_default_matmul_precision=")


def test_audit_without_a_framework_says_so(monkeypatch, capsys):
    from twincnn import backends

    real = backends.is_available
    monkeypatch.setattr(backends, "is_available", lambda name: name != "torch" and real(name))
    rows = {r[0]: r for r in audit_rows()}
    assert rows["Adam epsilon"][2] == "(not installed)"
