"""The spec's output head ("output": logits, softmax or log_softmax): plain data in and out, equality, describe()
and canonical(), and the rule that the last layer stays a dense layer without activation. Framework-free."""

import json

import pytest

from twincnn.spec import DEFAULT_SPEC, FLATTEN, OUTPUTS, Spec, SpecError, canonical, conv, dense

LAYERS = (conv(4, 3, 2), FLATTEN, dense(10))


def test_the_heads_and_the_default():
    assert OUTPUTS == ("logits", "softmax", "log_softmax")
    assert Spec((8, 8, 1), LAYERS).output == "logits"
    assert DEFAULT_SPEC.output == "logits"


def test_a_spec_of_logits_writes_no_output_key():
    """Existing spec files and the safetensors metadata of specs without a head stay byte for byte the same."""
    assert set(Spec((8, 8, 1), LAYERS).to_dict()) == {"input_shape", "layers"}


@pytest.mark.parametrize("head", ["softmax", "log_softmax"])
def test_a_head_is_written_and_read_back(head):
    spec = Spec((8, 8, 1), LAYERS, head)
    data = spec.to_dict()
    assert data["output"] == head
    back = Spec.from_dict(json.loads(json.dumps(data)))
    assert back.output == head and back == spec


def test_from_dict_without_output_reads_logits():
    assert Spec.from_dict({"input_shape": [8, 8, 1], "layers": list(LAYERS)}).output == "logits"


@pytest.mark.parametrize("output", ["probabilities", "Softmax", None, 1])
def test_an_unknown_head_is_one_line_listing_the_choices(output):
    data = {"input_shape": [8, 8, 1], "layers": list(LAYERS), "output": output}
    with pytest.raises(SpecError) as refused:
        Spec.from_dict(data)
    assert str(refused.value) == f"output must be one of logits, softmax, log_softmax, got {output!r}"


def test_load_reads_the_head(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"layers": list(LAYERS), "input_shape": [8, 8, 1], "output": "log_softmax"}))
    assert Spec.load(path).output == "log_softmax"


def test_the_head_is_part_of_equality_and_hash():
    logits, softmax, log_softmax = (Spec((8, 8, 1), LAYERS, head) for head in OUTPUTS)
    assert logits != softmax and softmax != log_softmax and logits != log_softmax
    assert len({logits, softmax, log_softmax}) == 3
    assert Spec((8, 8, 1), LAYERS, "softmax") == softmax
    assert hash(Spec((8, 8, 1), LAYERS, "softmax")) == hash(softmax)


@pytest.mark.parametrize("head", ["softmax", "log_softmax"])
def test_describe_ends_in_the_head(head):
    plain = Spec((8, 8, 1), LAYERS).describe()
    assert plain.endswith("fc1(units=10, activation=None)")
    assert Spec((8, 8, 1), LAYERS, head).describe() == f"{plain} -> {head}"


def test_canonical_keeps_the_head():
    spec = Spec((8, 8, 1), (conv(4, 3, 2, "same"), FLATTEN, dense(10)), "log_softmax")
    assert canonical(spec).output == "log_softmax"
    assert canonical(spec) == canonical(canonical(spec))


def test_the_last_layer_is_still_a_dense_layer_without_activation():
    with pytest.raises(SpecError, match="the last layer must be a dense layer without activation"):
        Spec((8, 8, 1), (conv(4, 3, 2), FLATTEN, dense(10, "relu")), "softmax")


def test_to_json_is_the_spec_one_layer_a_line():
    import json

    from twincnn.spec import DEFAULT_SPEC

    for spec in (DEFAULT_SPEC, Spec(DEFAULT_SPEC.input_shape, DEFAULT_SPEC.layers, output="log_softmax")):
        text = spec.to_json()
        assert json.loads(text) == spec.to_dict() and Spec.from_dict(json.loads(text)) == spec
        lines = text.splitlines()
        assert lines[0] == '{"input_shape": [28, 28, 1],' and lines[-1] == "}" and text.count("input_shape") == 1
        assert [json.loads(line.strip().rstrip(",")) for line in lines if line.startswith("  {")] == list(spec.layers)
    assert '\n "output": "log_softmax",\n' in spec.to_json() and '"output"' not in DEFAULT_SPEC.to_json()


def test_an_unknown_top_level_key_is_refused_rather_than_dropped():
    """A misspelt "output" would otherwise train and port a model of logits."""
    with pytest.raises(SpecError, match=r"^unknown key\(s\) \['ouptut'\]; a spec holds input_shape, layers, output, description$"):
        Spec.from_dict({"input_shape": [8, 8, 1], "layers": list(LAYERS), "ouptut": "softmax"})
