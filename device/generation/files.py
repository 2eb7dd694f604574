"""A composition's files: the MIDI, the WAV and the PNG, side by side in one folder.

Each file is written atomically, and the MIDI first, so a failure never leaves a
half file behind.

    >>> paths = write_files(comp, Path("out"), "ode-chorale")            # doctest: +SKIP
    >>> sorted(paths)                                             # doctest: +SKIP
    ['mid', 'png', 'wav']
"""

from __future__ import annotations

from pathlib import Path

from deepkeys.device.encoding import Composition
from deepkeys.device.generation.midifile import write_composition


def write_files(
    comp: Composition, out_dir: Path, stem: str, wav: bool = True, png: bool = True
) -> dict[str, Path]:
    """Write ``stem``.mid (and .wav, .png) into ``out_dir``; return the paths."""
    # Imported when needed: writing only the MIDI must not need FluidSynth.
    from deepkeys.device.generation.pianoroll import write_png
    from deepkeys.device.generation.render import render_wav

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"mid": out_dir / f"{stem}.mid"}
    write_composition(comp, paths["mid"])
    if wav:
        paths["wav"] = out_dir / f"{stem}.wav"
        render_wav(comp, paths["wav"])
    if png:
        paths["png"] = out_dir / f"{stem}.png"
        write_png(comp, paths["png"])
    return paths
