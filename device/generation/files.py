"""A composition's files: the MIDI, the WAV and the PNG, side by side in one folder.

All three or none: they are written into a hidden staging folder inside the output
folder (so on the same filesystem) and renamed into place only once every one of them
is whole. A full disk, a read-only folder or a failing renderer leaves the folder as it
was, and raises one :class:`~deepkeys.device.errors.UserError` line.

    >>> paths = write_files(comp, Path("out"), "ode-chorale")            # doctest: +SKIP
    >>> sorted(paths)                                             # doctest: +SKIP
    ['mid', 'png', 'wav']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from deepkeys.device.atomic import free_megabytes, fsync_dir
from deepkeys.device.encoding import Composition
from deepkeys.device.errors import UserError, one_line
from deepkeys.device.generation.midifile import write_composition

# Not ".part": atomic.remove_partials unlinks those as files, and this is a folder.
STAGING_SUFFIX = ".staging"
MARGIN_MB = 1  # the MIDI, the PNG, and room left over


def write_files(
    comp: Composition, out_dir: Path, stem: str, wav: bool = True, png: bool = True
) -> dict[str, Path]:
    """Write ``stem``.mid (and .wav, .png) into ``out_dir``, all or none; return the paths.

    Raises UserError (one line) when the folder cannot be made or the files cannot be
    written; nothing of this call is left behind then.
    """
    make_folder(out_dir)
    if wav:
        _check_room(comp, out_dir, stem)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=STAGING_SUFFIX, dir=out_dir))
    except OSError as exc:
        raise _cannot_write(out_dir, stem, exc) from None
    try:
        staged = _write_staged(comp, staging, stem, wav, png)
        return _move_in(staged, out_dir)
    except OSError as exc:
        raise _cannot_write(out_dir, stem, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_folder(out_dir: Path) -> None:
    """Create ``out_dir`` (and its parents); one UserError line if it is a file or cannot be."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: is a file, not a folder (the output goes in a folder)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the folder ({_reason(exc)})") from None


def _check_room(comp: Composition, out_dir: Path, stem: str) -> None:
    """One line, before any rendering, when the WAV cannot fit: a long input must never
    fill the disk (an SD card, on the appliance) with a render that then fails."""
    from deepkeys.device.generation.render import wav_bytes

    need_mb = -(-wav_bytes(comp) // 1_000_000) + MARGIN_MB
    free_mb = free_megabytes(out_dir)
    if free_mb is not None and free_mb < need_mb:
        raise UserError(
            f"{out_dir}: {free_mb} MB free, {stem}.wav needs about {need_mb} MB; "
            "nothing was written (--no-wav writes the MIDI and the PNG alone)"
        )


def _write_staged(
    comp: Composition, staging: Path, stem: str, wav: bool, png: bool
) -> dict[str, Path]:
    """The files written whole into ``staging``, by kind, in the order they go in."""
    # Imported when needed: writing only the MIDI must not need FluidSynth.
    from deepkeys.device.generation.pianoroll import write_png
    from deepkeys.device.generation.render import render_wav

    staged = {"mid": staging / f"{stem}.mid"}
    write_composition(comp, staged["mid"])
    if wav:
        staged["wav"] = staging / f"{stem}.wav"
        render_wav(comp, staged["wav"])
    if png:
        staged["png"] = staging / f"{stem}.png"
        write_png(comp, staged["png"])
    return staged


def _move_in(staged: dict[str, Path], out_dir: Path) -> dict[str, Path]:
    """Rename the staged files into ``out_dir``. A rename on one filesystem needs no space;
    should one still fail, the ones already moved are taken out again."""
    moved: dict[str, Path] = {}
    try:
        for kind, path in staged.items():
            target = out_dir / path.name
            os.replace(path, target)
            moved[kind] = target
    except OSError:
        for target in moved.values():
            with contextlib.suppress(OSError):
                target.unlink()
        raise
    fsync_dir(out_dir)
    return moved


def _cannot_write(out_dir: Path, stem: str, exc: OSError) -> UserError:
    return UserError(f"{out_dir}: cannot write {stem}.* ({_reason(exc)}); nothing was written")


def _reason(exc: OSError) -> str:
    """``No space left on device`` rather than the errno and the temporary file's name."""
    return exc.strerror or one_line(exc)
