"""`twincnn audit` reads the defaults from the installed frameworks."""

from twincnn.audit import audit_rows
from twincnn.cli import main


def test_audit_names_the_known_differences(tf_and_torch, capsys):
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
    from tests.helpers import require

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


def test_audit_reads_the_layer_defaults_that_differ(tf_and_torch):
    """The zoo's layers: each row read from the installed Keras and PyTorch (signatures, one BatchNorm step)."""
    rows = {r[0]: r for r in audit_rows()}
    momentum = rows["BatchNorm momentum (meaning, value)"]
    assert momentum[1].startswith("BatchNormalization(momentum=0.99): moving = m·moving")
    assert momentum[2].startswith("BatchNorm2d(momentum=0.1): running = (1-m)·running")
    assert rows["BatchNorm epsilon"][1:3] == ["BatchNormalization(epsilon=0.001)", "BatchNorm2d(eps=1e-05)"]
    variance = rows["BatchNorm moving variance"]
    assert "after one batch [0, 2] is 1" in variance[1] and "after one batch [0, 2] is 2" in variance[2]
    assert rows["average-pool 'same' divisor"][2].startswith("AvgPool2d(count_include_pad=True)")
    assert rows["GELU default approximation"][1:3] == [
        "keras.activations.gelu(approximate=False), keras.ops.gelu(approximate=True)", "nn.GELU(approximate='none')"]
    assert rows["LeakyReLU negative slope"][1:3] == ["LeakyReLU layer 0.3, activations.leaky_relu 0.2",
                                                     "nn.LeakyReLU(0.01)"]
    assert rows["LayerNorm epsilon"][1:3] == ["LayerNormalization(epsilon=0.001)", "LayerNorm(eps=1e-05)"]
    layout = rows["depthwise kernel layout"]
    assert "(3, 3, 3, 2)" in layout[1] and "(6, 1, 3, 3)" in layout[2]
    assert "bottom/right" in rows["'same' padding: the odd pixel"][1]
