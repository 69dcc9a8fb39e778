"""twincnn's pytest plugin (registered under pytest11): the `twin_check` fixture."""

import pytest


@pytest.fixture
def twin_check():
    """twincnn.testing.assert_same_function: `twin_check(keras_model, torch_module)` fails, with the first layer
    whose output differs, unless the two are the same function."""
    from .testing import assert_same_function

    return assert_same_function
