"""Publishing a saved composition: ``publish.command`` on its ``.mid`` and ``.json``.

The command runs without a shell; "{mid}" and "{json}" fill whole arguments only, and
the paths are in its environment as ``$DEEPKEYS_MID`` and ``$DEEPKEYS_JSON`` (see
:class:`~deepkeys.device.config.PublishConfig`).

Where it runs depends on how the daemon runs:

- by hand (``deepkeys run``, the tests, the simulator), the daemon's save worker
  runs the command itself (:func:`run_command`);
- under systemd, the daemon's sandbox has no network and a read-only system, which
  is right for the daemon and wrong for ``rsync`` to a NAS. ``deepkeys.service`` sets
  ``DEEPKEYS_PUBLISH_SPOOL``, so the daemon only drops a request into that folder
  (:func:`queue_request`); ``deepkeys-publish.path`` sees the folder is not empty and
  starts ``deepkeys-publish.service``, which runs ``deepkeys publish``
  (:func:`drain`) in a sandbox of its own: network allowed, the state directory
  read-only. The daemon needs no privilege to ask, and a request outlives a
  daemon crash or a reboot.

A request names files; the command comes from the config, which the daemon cannot
write, and :func:`drain` publishes only files in the state's ``compositions/``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deepkeys.device.atomic import fsync_dir
from deepkeys.device.config import Config, PublishConfig
from deepkeys.device.errors import UserError, one_line
from deepkeys.device.log import kv

log = logging.getLogger(__name__)

SPOOL_ENV = "DEEPKEYS_PUBLISH_SPOOL"
TIMEOUT_S = 60.0  # per composition: a hung rsync must not stall the queue forever


def spool_from_env() -> Path | None:
    """The publish queue's folder when a unit set one, else None (run the command here)."""
    value = os.environ.get(SPOOL_ENV, "")
    return Path(value) if value else None


def run_command(publish: PublishConfig, mid: Path, side: Path) -> bool:
    """Run the command on one composition; a failure is logged, never raised."""
    argv = publish.argv(mid, side)
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            env={**os.environ, **publish.env(mid, side)},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error(kv(event="publish_failed", command=argv[0], mid=mid, error=one_line(exc)))
        return False
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        log.error(
            kv(
                event="publish_failed",
                command=argv[0],
                mid=mid,
                status=result.returncode,
                error=tail[0],
            )
        )
        return False
    log.info(kv(event="published", mid=mid))
    return True


def queue_request(spool: Path, mid: Path, side: Path) -> Path:
    """Ask for ``mid`` and ``side`` to be published: ``spool/<stem>.json``, whole or absent.

    Written beside the spool and renamed in, so the path unit never sees half of one.
    Raises ``OSError`` (a full disk) for the caller to count.
    """
    spool.mkdir(parents=True, exist_ok=True)
    target = spool / f"{mid.stem}.json"
    tmp = spool.parent / f".publish-{mid.stem}.part"
    with open(tmp, "wb") as f:
        f.write(json.dumps({"mid": str(mid), "json": str(side)}).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(spool)
    log.info(kv(event="publish_queued", mid=mid, request=target))
    return target


@dataclass
class Drained:
    published: int = 0
    refused: int = 0
    failed: int = 0

    def line(self) -> str:
        if not (self.published or self.refused or self.failed):
            return "publish: nothing queued"
        return f"publish: {self.published} published, {self.refused} refused, {self.failed} failed"


def drain(cfg: Config, spool: Path) -> Drained:
    """Publish every queued request, oldest first, until the queue is empty.

    Each request is removed once handled, published or not (the composition stays in
    ``compositions/``): a request left behind would start the service again at once.
    A request that cannot be removed is a :class:`UserError`.
    """
    done = Drained()
    compositions = (cfg.paths.state_dir / "compositions").resolve()
    while spool.is_dir() and (requests := sorted(spool.glob("*.json"))):
        for request in requests:
            files = _files_of(request, compositions)
            if files is None:
                done.refused += 1
            elif not cfg.publish.command:
                log.warning(kv(event="publish_refused", request=request, reason="no_command"))
                done.refused += 1
            elif run_command(cfg.publish, *files):
                done.published += 1
            else:
                done.failed += 1
            try:
                request.unlink(missing_ok=True)
            except OSError as exc:
                raise UserError(f"cannot remove {request}: {exc.strerror or exc}") from None
    return done


def _files_of(request: Path, compositions: Path) -> tuple[Path, Path] | None:
    """The request's .mid and .json if both are files in ``compositions``; else logged."""
    try:
        raw = json.loads(request.read_text())
        mid, side = Path(raw["mid"]).resolve(), Path(raw["json"]).resolve()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(kv(event="publish_refused", request=request, reason=one_line(exc)))
        return None
    for path, suffix in ((mid, ".mid"), (side, ".json")):
        if path.parent != compositions or path.suffix != suffix or not path.is_file():
            log.warning(
                kv(
                    event="publish_refused",
                    request=request,
                    reason="not_a_saved_composition",
                    path=path,
                )
            )
            return None
    return mid, side
