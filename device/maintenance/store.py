"""Deployed genre models on the device: verified versions, atomic activation, rollback.

``deepkeys deploy`` (on the workstation) streams a tar of ``<genre>.json`` +
``<genre>.tflite`` pairs over SSH into ``deepkeys receive`` here, which calls
:meth:`ModelStore.receive`. Layout under the state directory::

    models -> models.d/live-3f9a01c2       a symlink, swapped in one rename
    models.d/live-3f9a01c2/<genre>.json    hard links to the active versions
    models.d/versions/<genre>/<sha256>/<genre>.{json,tflite}
    models.d/history.json                  {"<genre>": [older sha256, ..., active sha256]}

Why a symlink to a whole folder: a card and its model are two files, and two
renames are never atomic together. Building a new folder and swapping one link
means the daemon (and a power cut) only ever sees the old set or the new one.

A pair is verified before it is activated: its sha256 must match its card and
the one the workstation sent, and its tensors must match the card (LiteRT loads
it). A pair that fails is never activated; the rest of the store is untouched.

    >>> store = ModelStore("/var/lib/deepkeys")                 # doctest: +SKIP
    >>> store.receive(sys.stdin.buffer, expect={"jazz": sha})   # doctest: +SKIP
    >>> store.rollback("jazz")                                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from deepkeys.device.atomic import atomic_write_bytes, fsync_dir
from deepkeys.device.errors import UserError
from deepkeys.device.generation.card import GENRE_NAME, check_genre_name, load_card, sha256_of

KEEP_VERSIONS = 3  # per genre: the active one and two to roll back to
MAX_FILE_BYTES = 512 << 20  # a model is a few MB; refuse a stream that runs away
SUFFIXES = (".json", ".tflite")


@dataclass(frozen=True)
class Received:
    """What happened to one genre of a deploy."""

    genre: str
    sha256: str
    activated: bool
    error: str = ""


class ModelStore:
    """The deployed models under ``state_dir`` (see the module docstring)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.link = self.state_dir / "models"
        self.root = self.state_dir / "models.d"
        self.versions = self.root / "versions"
        self.history_file = self.root / "history.json"

    # ------------------------------------------------------------------ reading
    def history(self) -> dict[str, list[str]]:
        """Genre -> sha256 of its deployed versions, oldest first, the active one last."""
        try:
            return {g: list(v) for g, v in json.loads(self.history_file.read_text()).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            raise UserError(f"{self.history_file}: unreadable ({exc})") from None

    def active(self) -> dict[str, str]:
        """Genre -> sha256 of the active deployed version."""
        return {g: shas[-1] for g, shas in self.history().items() if shas}

    # ------------------------------------------------------------------ changing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One deploy or rollback at a time on this device."""
        self.versions.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def receive(
        self, stream: BinaryIO, expect: dict[str, str] | None = None, check_tensors: bool = True
    ) -> list[Received]:
        """Unpack a tar of model pairs, verify each, activate those that pass.

        ``expect`` maps genre -> the sha256 the sender computed; a pair missing from
        it, or different, is refused. Returns one :class:`Received` per genre.
        """
        expect = {check_genre_name(g): sha for g, sha in (expect or {}).items()}
        results: list[Received] = []
        with self._locked():
            incoming = Path(self._mkdtemp("incoming-"))
            try:
                genres = self._unpack(stream, incoming)
                for genre in sorted(set(genres) | set(expect)):
                    results.append(
                        self._verify(
                            incoming,
                            genre,
                            genres.get(genre, set()),
                            expect.get(genre),
                            check_tensors,
                        )
                    )
                good = [r for r in results if r.activated]
                if good:
                    history = self.history()
                    for r in good:
                        self._keep(incoming / r.genre, r.genre, r.sha256)
                        shas = [s for s in history.get(r.genre, []) if s != r.sha256]
                        history[r.genre] = (shas + [r.sha256])[-KEEP_VERSIONS:]
                    self._commit(history)
            finally:
                shutil.rmtree(incoming, ignore_errors=True)
        return results

    def rollback(self, genre: str) -> str:
        """Make the previous deployed version of ``genre`` active again; its sha256."""
        check_genre_name(genre)
        with self._locked():
            history = self.history()
            shas = history.get(genre, [])
            if len(shas) < 2:
                have = "one deployed version" if shas else "no deployed versions"
                raise UserError(
                    f"cannot roll back {genre!r}: it has {have}, so there is no previous one"
                )
            history[genre] = shas[:-1]
            self._commit(history)
            return history[genre][-1]

    # ------------------------------------------------------------------ the steps
    def _mkdtemp(self, prefix: str) -> str:
        import tempfile

        return tempfile.mkdtemp(prefix=prefix, dir=self.root)

    def _unpack(self, stream: BinaryIO, into: Path) -> dict[str, set[str]]:
        """Regular files named ``<genre>.json|.tflite`` only, each into its own folder.

        Members are copied by hand, never ``extract``-ed: no links, no paths, no modes.
        """
        found: dict[str, set[str]] = {}
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    name = member.name
                    stem, suffix = os.path.splitext(name)
                    if suffix not in SUFFIXES or not member.isfile():
                        raise UserError(f"unexpected entry {name!r} in the model stream")
                    check_genre_name(stem)
                    if member.size > MAX_FILE_BYTES:
                        raise UserError(f"{name!r} is larger than {MAX_FILE_BYTES >> 20} MB")
                    folder = into / stem
                    folder.mkdir(exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file always has data
                    with open(folder / name, "wb") as out:
                        shutil.copyfileobj(source, out)
                        out.flush()
                        os.fsync(out.fileno())
                    found.setdefault(stem, set()).add(suffix)
        except tarfile.TarError as exc:
            raise UserError(f"the model stream is not a complete tar ({exc})") from None
        return found

    def _verify(
        self,
        incoming: Path,
        genre: str,
        suffixes: set[str],
        expected: str | None,
        check_tensors: bool,
    ) -> Received:
        def refuse(why: str) -> Received:
            return Received(genre, expected or "", False, why)

        if suffixes != set(SUFFIXES):
            missing = ", ".join(f"{genre}{s}" for s in SUFFIXES if s not in suffixes)
            return refuse(f"incomplete: {missing} not received")
        if expected is None:
            return refuse("not announced by the sender (no --expect)")
        card_file = incoming / genre / f"{genre}.json"
        try:
            card = load_card(card_file)  # the model's sha256 against its card
            if card.sha256 != expected:
                return refuse(
                    f"the card says sha256 {card.sha256[:12]}…, the sender sent {expected[:12]}…"
                )
            if check_tensors:
                from deepkeys.device.generation.generator import Generator

                Generator(card)  # tensor names, shapes and int8 parameters against the card
        except UserError as exc:
            return refuse(str(exc).replace(str(incoming / genre) + "/", ""))
        return Received(genre, card.sha256, True)

    def _keep(self, folder: Path, genre: str, sha: str) -> None:
        """Move a verified pair into versions/<genre>/<sha256>/ (kept if already there)."""
        target = self.versions / genre / sha
        if target.is_dir() and sha256_of(target / f"{genre}.tflite") == sha:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)  # a half-kept leftover of a crash
        for f in folder.iterdir():
            os.chmod(f, 0o644)  # the daemon's user reads what a maintainer deployed
        os.rename(folder, target)
        fsync_dir(target.parent)

    def _commit(self, history: dict[str, list[str]]) -> None:
        """Write the history, then publish a live folder built from it and swap the link."""
        self._adopt_plain_folder(history)
        history = {g: shas for g, shas in sorted(history.items()) if shas}
        atomic_write_bytes(self.history_file, (json.dumps(history, indent=2) + "\n").encode())
        live = Path(self._mkdtemp("live-"))
        os.chmod(live, 0o755)
        for genre, shas in history.items():
            for suffix in SUFFIXES:
                os.link(
                    self.versions / genre / shas[-1] / f"{genre}{suffix}", live / f"{genre}{suffix}"
                )
        fsync_dir(live)
        tmp = self.state_dir / f".models.{secrets.token_hex(4)}"
        os.symlink(os.path.relpath(live, self.state_dir), tmp)
        os.replace(tmp, self.link)  # the one atomic step: old set or new set
        fsync_dir(self.state_dir)
        for old in self.root.glob("live-*"):
            if old != live:
                shutil.rmtree(old, ignore_errors=True)
        self._prune(history)

    def _adopt_plain_folder(self, history: dict[str, list[str]]) -> None:
        """A hand-made ``models/`` folder (not our link) cannot be swapped atomically:
        its pairs become versions (behind any deployed one) and it moves aside to
        ``models.d/manual-*``, so the link can take its place."""
        if not self.link.is_dir() or self.link.is_symlink():
            return
        for card in sorted(self.link.glob("*.json")):
            genre, model = card.stem, card.with_suffix(".tflite")
            if not model.is_file() or not GENRE_NAME.fullmatch(genre):
                continue  # left in the manual-* folder it moves to
            sha = sha256_of(model)
            target = self.versions / genre / sha
            if not target.is_dir():
                target.mkdir(parents=True)
                for f in (card, model):
                    shutil.copy2(f, target / f.name)
            shas = history.setdefault(genre, [])
            if sha not in shas:
                shas.insert(0, sha)
        os.rename(self.link, self._mkdtemp("manual-"))

    def _prune(self, history: dict[str, list[str]]) -> None:
        if not self.versions.is_dir():
            return
        for genre_dir in self.versions.iterdir():
            keep = set(history.get(genre_dir.name, []))
            for version in genre_dir.iterdir():
                if version.name not in keep:
                    shutil.rmtree(version, ignore_errors=True)
            if not keep:
                shutil.rmtree(genre_dir, ignore_errors=True)
