"""``deepkeys logs``: the daemon's journal, through ``journalctl``.

>>> journal_argv(since="1 hour ago", follow=True)  # doctest: +NORMALIZE_WHITESPACE
['journalctl', '--unit', 'deepkeys.service', '--output', 'short-iso', '--no-pager',
 '--since', '1 hour ago', '--follow']
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from deepkeys.device.errors import UserError

UNIT = "deepkeys.service"
JOURNAL_DIRS = (Path("/run/systemd/journal"), Path("/var/log/journal"), Path("/run/log/journal"))


def journal_argv(
    since: str | None = None, follow: bool = False, lines: int | None = None, unit: str = UNIT
) -> list[str]:
    argv = ["journalctl", "--unit", unit, "--output", "short-iso", "--no-pager"]
    if since:
        argv += ["--since", since]
    if lines is not None:
        argv += ["--lines", str(lines)]
    if follow:
        argv.append("--follow")
    return argv


def show_logs(since: str | None = None, follow: bool = False, lines: int | None = None) -> int:
    """Run journalctl for the daemon's unit (its exit status), or say in one line why not."""
    if shutil.which("journalctl") is None:
        raise UserError(
            "journalctl is not installed here, so there is no journal to read "
            "(the daemon logs to stdout/stderr)"
        )
    if not any(d.is_dir() for d in JOURNAL_DIRS):
        raise UserError(
            "journald is not running here (no /run/systemd/journal): run the "
            "daemon under systemd, or read its stdout"
        )
    try:
        return subprocess.run(
            journal_argv(since, follow, lines),
            check=False,
            env={**os.environ, "SYSTEMD_COLORS": "0"},
        ).returncode
    except KeyboardInterrupt:
        return 0
