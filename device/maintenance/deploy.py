"""``deepkeys deploy`` and remote ``rollback``: the workstation side, over OpenSSH.

Only the standard library and device code: deploying never needs TensorFlow. The
system ``ssh`` runs with an argument list (no local shell), the destination comes
after ``--`` (so it can never be read as an option), and every word of the remote
command is quoted with :func:`shlex.quote` for the remote shell. The models travel
as a tar on ssh's stdin into ``deepkeys receive`` on the device, which verifies
and activates them (see ``modelstore``).

    >>> print(remote_command("sudo -n /opt/dk/deepkeys", ["receive", "--expect", "it's=ab"]))
    sudo -n /opt/dk/deepkeys receive --expect 'it'"'"'s=ab'
"""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from deepkeys.device.generation.card import load_card
from deepkeys.device.errors import UserError
from deepkeys.device.maintenance.store import check_genre_name

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


def run_remote(dest: str, args: Sequence[str], *, remote: str | None = None,
               ssh_config: str | None = None, stdin: bytes = b"") -> str:
    """Run ``deepkeys ARGS`` on the device; its stdout, or a one-line UserError."""
    remote = remote or os.environ.get(REMOTE_ENV) or DEFAULT_REMOTE
    argv = ssh_argv(dest, remote_command(remote, args), ssh_config)
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, timeout=SSH_TIMEOUT_S,
                                check=False)
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


def pack(cards: Sequence[Path]) -> tuple[bytes, dict[str, str]]:
    """A tar of each card and its model, after checking the model's sha256 against its card.

    Returns the tar and genre -> sha256. A card that does not match its model stops
    the deploy before anything is sent.
    """
    buf = io.BytesIO()
    expect: dict[str, str] = {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for card_file in cards:
            genre = check_genre_name(card_file.stem)
            try:
                card = load_card(card_file)
            except UserError as exc:
                raise UserError(f"refusing to deploy {genre!r}: {exc}") from None
            for path in (card_file, card.model_path):
                info = tar.gettarinfo(str(path), arcname=path.name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            expect[genre] = card.sha256
    return buf.getvalue(), expect


def deploy(dest: str, genres: Sequence[str] | None, models_dir: str | os.PathLike[str], *,
           remote: str | None = None, remote_config: str | None = None,
           ssh_config: str | None = None) -> str:
    """Send the models of ``genres`` (default: every card in ``models_dir``) to ``dest``.

    The device verifies each one, activates it, keeps the previous version and asks
    the running daemon to reload. Returns the device's report lines.
    """
    check_destination(dest)  # before the work of packing
    folder = Path(models_dir)
    if genres:
        cards = [folder / f"{check_genre_name(g)}.json" for g in genres]
    else:
        cards = sorted(folder.glob("*.json"))
        if not cards:
            raise UserError(f"no model cards (*.json) in {folder}")
    data, expect = pack(cards)
    args = ["receive"]
    if remote_config:
        args += ["--config", remote_config]
    for genre, sha in expect.items():
        args += ["--expect", f"{genre}={sha}"]
    return run_remote(dest, args, remote=remote, ssh_config=ssh_config, stdin=data)
