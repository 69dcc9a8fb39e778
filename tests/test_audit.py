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
    for setting in ("data order", "intra-op threads", "TF32", "deterministic ops", "per-epoch extras"):
        assert setting in out


def test_audit_without_a_framework_says_so(monkeypatch, capsys):
    from twincnn import backends

    real = backends.is_available
    monkeypatch.setattr(backends, "is_available", lambda name: name != "torch" and real(name))
    rows = {r[0]: r for r in audit_rows()}
    assert rows["Adam epsilon"][2] == "(not installed)"
