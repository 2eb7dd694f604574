"""``deepkeys hil``: the HIL suite here, or on a device over SSH (``--target ssh://pi@host``).

On a device the suite runs just as it does here: its own ``jackd -d dummy``, the
daemon as a separate process, virtual ports and the recorder, all on the device's
CPU with the device's installed code, so the same scenarios and ``bench e2e``
figures come from an ARM board. The output streams back as it is printed, and the
exit status is pytest's own.

    $ deepkeys hil                                          # here: pytest hil
    $ deepkeys hil --target ssh://pi@deepkeys.local -- -k play -x

The device needs jackd2 (``apt install jackd2``) and the ``hil`` extra in its venv
(``/opt/deepkeys/.venv/bin/pip install -e '/opt/deepkeys[hil]'``). SSH is the system
``ssh`` with key auth, as for ``deepkeys deploy``; every remote word is quoted.

>>> destination("ssh://pi@deepkeys.local")
'pi@deepkeys.local'
>>> print(remote_line("/opt/deep keys", "/opt/deep keys/.venv/bin/python", ["-k", "play it"]))
cd '/opt/deep keys' && '/opt/deep keys/.venv/bin/python' -m pytest hil -k 'play it'
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from deepkeys.device.errors import UserError
from deepkeys.device.maintenance.ssh import check_destination, ssh_argv

HIL_DIR = Path(__file__).resolve().parent
DEFAULT_PREFIX = "/opt/deepkeys"  # where `deepkeys install` puts the code on a Pi
SSH_FAILED = 255  # ssh's own exit status: connection, authentication, host key


def destination(target: str) -> str:
    """``ssh://[USER@]HOST`` -> ``[USER@]HOST``; anything else is a one-line UserError."""
    scheme, sep, rest = target.partition("://")
    if scheme != "ssh" or not sep or not rest or "/" in rest:
        raise UserError(f"bad --target {target!r}: expected ssh://USER@HOST")
    return check_destination(rest)


def remote_line(prefix: str, python: str, pytest_args: Sequence[str]) -> str:
    """The remote shell's command: pytest on the checkout's ``hil`` folder, every word quoted."""
    words = " ".join(shlex.quote(w) for w in [python, "-m", "pytest", "hil", *pytest_args])
    return f"cd {shlex.quote(prefix)} && {words}"


def run_hil(
    pytest_args: Sequence[str],
    target: str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    python: str | None = None,
    ssh_config: str | None = None,
) -> int:
    """Run the suite here or on ``target``; returns pytest's exit status."""
    if target is None:
        argv = [sys.executable, "-m", "pytest", str(HIL_DIR), *pytest_args]
    else:
        dest = destination(target)
        python = python or f"{prefix.rstrip('/')}/.venv/bin/python"
        argv = ssh_argv(dest, remote_line(prefix, python, pytest_args), ssh_config)
    try:
        status = subprocess.run(argv, check=False).returncode  # output streams through
    except FileNotFoundError:
        raise UserError("ssh is not installed here (apt install openssh-client)") from None
    if target is not None and status == SSH_FAILED:
        raise UserError(f"{target}: ssh failed (see above)")
    return status
