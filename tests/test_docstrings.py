"""The examples in the docstrings of every device module (and the host's numpy-only metrics)
run as tests, so a docstring never shows what the code no longer does."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest


def _modules_with_examples() -> list[str]:
    """Every module of the device, and the host's metrics (numpy only), by dotted name."""
    import deepkeys.device

    names = [
        m.name
        for m in pkgutil.walk_packages(deepkeys.device.__path__, "deepkeys.device.")
        if not m.name.endswith("__main__")
    ]
    return [*names, "deepkeys.host.metrics"]


DOCTEST_MODULES = _modules_with_examples()


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
    assert module.__doc__, f"{name} has no module docstring"
