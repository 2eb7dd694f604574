"""Where a genre's training data comes from, and the generator that fits it.

Four sources, picked per genre: a user's folder of MIDI files when one is given
(:mod:`deepkeys.host.data.folder`, or the shards ``deepkeys prepare`` made of it,
:mod:`deepkeys.host.data.shards`), the Bach chorales for ``chorale``
(:mod:`deepkeys.host.data.chorales`), POP909's pianists for ``ballad``
(:mod:`deepkeys.host.data.pop909`), and an MMA style recipe for the style genres
(:mod:`deepkeys.host.data.mma`). Each gives train/validation/test :class:`Windows`
(a prepared folder's training set as a lazy ``ShardedWindows``).
"""

from __future__ import annotations

from pathlib import Path

from deepkeys.device.encoding import DRUM_CLASSES
from deepkeys.device.errors import UserError
from deepkeys.host.data import chorales, pop909
from deepkeys.host.data.band import BAND
from deepkeys.host.data.folder import load_folder
from deepkeys.host.data.mma import STYLES, load_style_split
from deepkeys.host.data.shards import is_prepared, load_prepared
from deepkeys.host.data.windows import Windows
from deepkeys.host.model import GeneratorConfig


def genre_config(genre: str) -> tuple[GeneratorConfig, dict[str, int]]:
    """The generator for a genre and the training settings that differ from the defaults.

    The band model is narrower than the chorale one and sees a fixed number of batches
    per epoch: seven genres must train in three hours on a 2-core CPU.
    """
    if genre == "chorale":
        return GeneratorConfig(), {}
    if genre == pop909.PIANO_GENRE:
        cfg = GeneratorConfig(
            **pop909.PIANO_TRACKS, widths=(96, 128, 160, 192), critic_widths=(64, 96, 128, 160)
        )
        return cfg, {"steps_per_epoch": 100, "patience": 4}
    grooves = STYLES[genre].grooves if genre in STYLES else ()
    cfg = GeneratorConfig(
        **BAND,
        n_drum_classes=len(DRUM_CLASSES),
        grooves=grooves,
        widths=(96, 128, 160, 192),
        critic_widths=(64, 96, 128, 160),
    )
    return cfg, {"steps_per_epoch": 100, "patience": 4}


def load_windows(
    genre: str,
    data_folder: str | Path | None = None,
    melody_track: str | None = None,
    bars: int = 4,
) -> dict[str, Windows]:
    """Train/validation/test windows: a user's folder (as MIDI files, or as ``deepkeys
    prepare`` left it, whose training set is read shard by shard), the chorales, or an
    MMA style."""
    if data_folder is not None and is_prepared(data_folder):
        return load_prepared(data_folder, bars=bars)
    if data_folder is not None:
        return load_folder(data_folder, melody_track, bars)
    if genre == "chorale":
        return chorale_split(bars)
    if genre in STYLES:
        return load_style_split(genre, bars)
    if genre == pop909.PIANO_GENRE:
        return pop909.piano_split(bars)
    raise UserError(
        f"no data for genre {genre!r}: shipped recipes are chorale, {pop909.PIANO_GENRE}, "
        f"{', '.join(STYLES)}; for your own music give --data FOLDER"
    )


def chorale_split(bars: int = 4) -> dict[str, Windows]:
    """The chorale windows of each set of the committed split, a bar apart."""
    by_name = {c.name: c for c in chorales.load_chorales()}
    return {
        part: Windows.voices_only(
            *chorales.windows([by_name[n] for n in names if n in by_name], bars=bars, hop_bars=1)
        )
        for part, names in chorales.load_split().items()
    }
