"""The General MIDI SoundFont and the FluidSynth library, found once for every user.

The live synth (``adapters/synth``), the offline renderer (``generation/render``)
and ``deepkeys doctor`` all resolve the config's ``audio.soundfont`` here: "auto"
means ``$DEEPKEYS_SOUNDFONT`` if set, else the first of Debian's SoundFonts that
is installed; anything else is a path.

>>> resolve_soundfont("/no/such.sf2")
Traceback (most recent call last):
...
deepkeys.device.errors.UserError: /no/such.sf2: no such SoundFont file
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from types import ModuleType

from deepkeys.device.errors import UserError

AUTO = "auto"
# Debian's General MIDI SoundFonts, smallest first: TimGM6mb (6 MB) suits the Pi.
SOUNDFONT_CANDIDATES = (
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
)
SOUNDFONT_ENV = "DEEPKEYS_SOUNDFONT"
GAIN = 0.5  # FluidSynth's master gain: four parts at full velocity stay (mostly) unclipped


def default_soundfont() -> Path:
    """The SoundFont "auto" stands for: ``$DEEPKEYS_SOUNDFONT`` (which must exist), else
    the first of :data:`SOUNDFONT_CANDIDATES` that is installed."""
    override = os.environ.get(SOUNDFONT_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise UserError(f"{SOUNDFONT_ENV}={override}: no such SoundFont file")
        return path
    for path in SOUNDFONT_CANDIDATES:
        if path.is_file():
            return path
    raise UserError("no General MIDI SoundFont found; install timgm6mb-soundfont")


def resolve_soundfont(setting: str | os.PathLike[str] | None = AUTO) -> Path:
    """The SoundFont file for a config value ("auto", None or a path), checked to be one."""
    font = default_soundfont() if setting is None or str(setting) == AUTO else Path(setting)
    check_soundfont(font)
    return font


def check_soundfont(font: Path) -> None:
    """Refuse a missing or non-SoundFont file before FluidSynth logs its own errors."""
    try:
        with open(font, "rb") as f:
            head = f.read(12)
    except OSError:
        raise UserError(f"{font}: no such SoundFont file") from None
    # A SoundFont 2 file is a RIFF container of form type "sfbk".
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise UserError(f"{font}: not a SoundFont (.sf2) file")


def import_fluidsynth() -> ModuleType:
    """The pyfluidsynth module, or a one-line UserError if it or libfluidsynth is missing.

    Imported lazily so that reading and writing MIDI never needs libfluidsynth.
    pyfluidsynth prints where it found the library to *stdout* when ``$CI`` is set;
    that line would corrupt our key=value output, so it is swallowed.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except (ImportError, OSError):
        raise UserError(
            "FluidSynth is not available; install libfluidsynth3 and pyfluidsynth"
        ) from None
    return fluidsynth
