"""Where installed genre models live, and which genres there are.

A genre is installed when its card ``<genre>.json`` is in one of the model folders;
the card names its ``<genre>.tflite`` beside it, and loading the card says so in
one line when that file is missing or does not match. Earlier folders win, so a
model deployed to the state directory overrides the one shipped with the code.
The harmony model that every genre shares lives in the same folders as
``harmony.json`` (:func:`harmony_card_path`); it is not a genre.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from deepkeys.device.errors import UserError
from deepkeys.device.resources import SHIPPED_MODELS, STATE_MODELS

HARMONY = "harmony"  # the shared melody-to-chords model: harmony.json + harmony.tflite


def model_dirs(extra: str | Path | None = None) -> list[Path]:
    dirs = [Path(extra)] if extra else []
    if os.environ.get("DEEPKEYS_MODELS"):
        dirs += [Path(p) for p in os.environ["DEEPKEYS_MODELS"].split(os.pathsep) if p]
    return dirs + [STATE_MODELS, SHIPPED_MODELS]


def installed_genres(extra: str | Path | None = None) -> dict[str, Path]:
    """Genre name -> card path over the default search path (``extra`` first)."""
    return genres_in(model_dirs(extra))


def genres_in(folders: Iterable[str | Path]) -> dict[str, Path]:
    """Genre name -> card path over ``folders``; earlier folders win, then by name.
    The harmony model's card (:data:`HARMONY`) is not a genre."""
    found: dict[str, Path] = {}
    for folder in map(Path, folders):
        if folder.is_dir():
            for card in sorted(folder.glob("*.json")):
                if card.stem != HARMONY:
                    found.setdefault(card.stem, card)
    return found


def harmony_card_path(first: str | Path | None = None) -> Path | None:
    """``harmony.json`` from ``first`` or the first model folder that has one; None if none."""
    for folder in ([Path(first)] if first else []) + model_dirs():
        card = folder / f"{HARMONY}.json"
        if card.is_file():
            return card
    return None


def card_path(genre: str, extra: str | Path | None = None) -> Path:
    genres = installed_genres(extra)
    if genre not in genres:
        known = ", ".join(genres) or "none"
        raise UserError(f"no model for genre {genre!r} (installed: {known})")
    return genres[genre]
