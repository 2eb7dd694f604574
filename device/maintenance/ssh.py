"""Running deepkeys on the device over the system OpenSSH client, safely quoted.

``ssh`` runs with an argument list (no local shell), the destination comes after
``--`` (so it can never be read as an option), and every word of the remote command
is quoted with :func:`shlex.quote` for the remote shell. ``deploy``, remote
``rollback`` and ``deepkeys hil --target`` all go through here.

    >>> print(remote_command("sudo -n /opt/dk/deepkeys", ["receive", "--expect", "it's=ab"]))
    sudo -n /opt/dk/deepkeys receive --expect 'it'"'"'s=ab'
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence

from deepkeys.device.errors import UserError

#: How the device's deepkeys is run over SSH: as the service user, so the files it
#: writes belong to the daemon's user; Raspberry Pi OS's first user may sudo without
#: a password. Override with --remote-deepkeys or $DEEPKEYS_REMOTE.
DEFAULT_REMOTE = "sudo -n -u deepkeys /opt/deepkeys/.venv/bin/deepkeys"
REMOTE_ENV = "DEEPKEYS_REMOTE"
SSH_TIMEOUT_S = 300


def remote_command(remote: str, args: Sequence[str]) -> str:
    """The remote shell's command line: ``remote`` (shell words) then ``args``, all quoted."""
    return " ".join(shlex.quote(w) for w in [*shlex.split(remote), *args])


def check_destination(dest: str) -> str:
    """``USER@HOST`` or ``HOST`` (an ssh_config alias too); never something ssh would
    read as an option, and nothing that would split the line."""
    if not dest or dest.startswith("-") or any(c in dest for c in "\n\r\0"):
        raise UserError(f"bad destination {dest!r}: expected USER@HOST or HOST")
    return dest


def ssh_argv(dest: str, command: str, ssh_config: str | None = None) -> list[str]:
    """``ssh`` that never prompts (key auth only), to ``dest``, running ``command``."""
    argv = ["ssh"]
    if ssh_config:
        argv += ["-F", str(ssh_config)]
    return [*argv, "-o", "BatchMode=yes", "--", check_destination(dest), command]


def run_remote(
    dest: str,
    args: Sequence[str],
    *,
    remote: str | None = None,
    ssh_config: str | None = None,
    stdin: bytes = b"",
) -> str:
    """Run ``deepkeys ARGS`` on the device; its stdout, or a one-line UserError."""
    remote = remote or os.environ.get(REMOTE_ENV) or DEFAULT_REMOTE
    argv = ssh_argv(dest, remote_command(remote, args), ssh_config)
    try:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=SSH_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise UserError("ssh is not installed here (apt install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{dest}: no answer over ssh within {SSH_TIMEOUT_S} s") from None
    out = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {result.returncode}"
        if result.returncode == 255:  # ssh's own failure: connection, auth, host key
            raise UserError(f"{dest}: ssh failed: {why}")
        print(out, end="")  # what the device did before it failed
        raise UserError(f"{dest}: {why.removeprefix('deepkeys: ')}")
    return out
