"""``deepkeys deploy`` and remote ``rollback``: the workstation side, over OpenSSH.

Only the standard library and device code: deploying never needs TensorFlow. The
models travel as a tar on ssh's stdin (see :mod:`~deepkeys.device.maintenance.ssh`
for how ssh is run and quoted) into ``deepkeys receive`` on the device, which
verifies and activates them (see :mod:`~deepkeys.device.maintenance.store`).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from deepkeys.device.errors import UserError
from deepkeys.device.generation.card import check_genre_name, load_card
from deepkeys.device.generation.library import genres_in
from deepkeys.device.maintenance.ssh import check_destination, run_remote


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


def deploy(
    dest: str,
    genres: Sequence[str] | None,
    models_dir: str | os.PathLike[str],
    *,
    remote: str | None = None,
    remote_config: str | None = None,
    ssh_config: str | None = None,
) -> str:
    """Send the models of ``genres`` (default: every card in ``models_dir``) to ``dest``.

    The device verifies each one, activates it, keeps the previous version and asks
    the running daemon to reload. Returns the device's report lines.
    """
    check_destination(dest)  # before the work of packing
    folder = Path(models_dir)
    if genres:
        cards = [folder / f"{check_genre_name(g)}.json" for g in genres]
    else:
        cards = sorted(genres_in([folder]).values())  # the harmony model is not a genre
        if not cards:
            raise UserError(f"no model cards (*.json) in {folder}")
    data, expect = pack(cards)
    args = ["receive"]
    if remote_config:
        args += ["--config", remote_config]
    for genre, sha in expect.items():
        args += ["--expect", f"{genre}={sha}"]
    return run_remote(dest, args, remote=remote, ssh_config=ssh_config, stdin=data)
