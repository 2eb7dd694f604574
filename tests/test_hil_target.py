"""``deepkeys hil --target ssh://...``: the suite runs on a device over a real OpenSSH server.

The "device" is this machine through the loopback ``sshd`` fixture (conftest), with
its checkout reached through a path that needs quoting. What runs there is the real
suite, by pytest, and what comes back is its output and its exit status.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import REPO, run_cli


def hil(sshd: Path, prefix: Path | str, *pytest_args: str):
    return run_cli(
        "hil",
        "--target",
        "ssh://root@deepkeys-pi",
        "-F",
        str(sshd),
        "--remote-prefix",
        str(prefix),
        "--remote-python",
        sys.executable,
        "--",
        *pytest_args,
    )


def test_the_suite_runs_on_the_target_and_its_status_comes_back(sshd, tmp_path):
    device = tmp_path / "opt dir's $(touch PWNED)"  # the remote shell must not split or run it
    device.mkdir()
    checkout = device / "deepkeys"
    checkout.symlink_to(REPO)

    done = hil(sshd, checkout, "-k", "match_delay", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "hil/test_bench.py ." in done.stdout  # pytest's own report, from the device
    assert re.search(r"=+ 1 passed, \d+ deselected in", done.stdout)
    assert not list(tmp_path.rglob("PWNED")) and not (REPO / "PWNED").exists()

    done = hil(sshd, checkout, "-k", "no_such_scenario", "-p", "no:cacheprovider")
    assert done.returncode == 5  # pytest's "no tests collected", passed through unchanged


def test_target_errors_are_one_line(sshd, tmp_path):
    done = run_cli("hil", "--target", "http://pi@host")
    assert (done.returncode, done.stderr) == (
        2,
        "deepkeys: bad --target 'http://pi@host': expected ssh://USER@HOST\n",
    )
    done = run_cli("hil", "--target", "ssh://-oProxyCommand=x")
    assert done.returncode == 2 and done.stderr.startswith("deepkeys: bad destination")

    missing = tmp_path / "no checkout here"
    done = hil(sshd, missing, "-k", "x")
    assert done.returncode != 0  # the remote `cd` fails: nothing runs, and it says so
    assert "no checkout here" in done.stderr
