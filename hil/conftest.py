"""HIL fixtures: one private JACK server for the session, one rig (a daemon) per test.

If jackd cannot start, every HIL test is skipped with jackd's own reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deepkeys.hil.jackd import JackServer, JackUnavailable, start_jackd
from deepkeys.hil.rig import Rig, RigOptions

HIL_PERIOD = 128


@pytest.fixture(scope="session")
def hil_jack() -> Iterator[JackServer]:
    """``jackd -d dummy`` at 128-frame periods, stopped by PID at the end of the session."""
    try:
        server = start_jackd(period=HIL_PERIOD)
    except JackUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_rig(hil_jack: JackServer, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``make_rig(**RigOptions fields)`` starts a daemon; all are stopped after the test."""
    rigs: list[Rig] = []

    def make(start: bool = True, **options) -> Rig:
        rig = Rig(
            hil_jack, tmp_path / f"rig{len(rigs)}", RigOptions(**options), name=f"hil{len(rigs)}"
        )
        rigs.append(rig)
        return rig.start() if start else rig

    yield make
    for rig in rigs:
        rig.close()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()
