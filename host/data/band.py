"""The band's training windows: a melody over multitrack parts, cut into bass, comp, pad
and drums windows.

MMA's renders (:mod:`deepkeys.host.data.mma`) and users' own files
(:mod:`deepkeys.host.data.folder`) both arrive as a :class:`BandPiece`: a melody on the
16th grid plus one :class:`~deepkeys.host.data.multitrack.GridPart` per General MIDI
role. :func:`band_windows` turns pieces into the :class:`Windows` of the model's
:data:`BAND` tracks, whatever made the pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from deepkeys.device.chords import NO_CHORD, chord_of_weights
from deepkeys.device.encoding import REST, STEPS_PER_BAR
from deepkeys.device.generation.harmony import CELL_STEPS
from deepkeys.host.data.multitrack import GridPart, line
from deepkeys.host.data.windows import Windows


class BandTracks(TypedDict):
    """Track names by kind, as :class:`~deepkeys.host.model.GeneratorConfig` fields."""

    voices: tuple[str, ...]
    poly: tuple[str, ...]
    drums: tuple[str, ...]


# MMA's (and LPD-5's) General MIDI families folded into a bass voice, two polyphonic
# parts and the drums; each track is named after the multitrack role it is cut from.
BAND: BandTracks = {"voices": ("bass",), "poly": ("comp", "pad"), "drums": ("drums",)}


@dataclass
class BandPiece:
    """One melody with its accompaniment on the step grid."""

    name: str  # the chorale's name, or the user's file name
    groove: str  # the MMA groove that accompanies it; "" for a user's file
    melody_pitch: np.ndarray  # (T,)
    melody_onset: np.ndarray
    parts: dict[str, GridPart]  # by multitrack role
    # The chord of each half-bar cell (token, bass pitch class or -1): the progression
    # MMA was given, or, for a user's file, read from its own parts (estimate_chords).
    chords: np.ndarray | None = None
    chord_bass: np.ndarray | None = None

    def cell_chords(self) -> tuple[np.ndarray, np.ndarray]:
        if self.chords is not None and self.chord_bass is not None:
            return self.chords, self.chord_bass
        return estimate_chords(self.parts, len(self.melody_pitch))


def estimate_chords(parts: dict[str, GridPart], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Each half bar's chord as the accompaniment plays it: the pitch classes of every
    pitched part weighted by how long they sound, the bass part's twice, and the bass
    part's lowest note as the bass."""
    cells = -(-steps // CELL_STEPS)
    tokens = np.full(cells, NO_CHORD, np.int16)
    bass = np.full(cells, -1, np.int16)
    bass_line, _ = line(parts["bass"])
    for c in range(cells):
        sl = slice(c * CELL_STEPS, (c + 1) * CELL_STEPS)
        weights = np.zeros(12)
        for role in ("bass", "comp", "pad"):
            per_pitch = parts[role].sounding[sl].sum(axis=0)  # (128,)
            np.add.at(weights, np.arange(128) % 12, per_pitch * (2.0 if role == "bass" else 1.0))
        low = bass_line[sl][bass_line[sl] != REST]
        chord = chord_of_weights(weights, int(low[0] % 12) if len(low) else None)
        tokens[c] = chord.token
        bass[c] = -1 if chord.bass is None else chord.bass
    return tokens, bass


def band_windows(
    pieces: list[BandPiece], bars: int, hop_bars: int = 1, grooves: tuple[str, ...] = ()
) -> Windows:
    """Every ``bars``-bar window with some melody, ``hop_bars`` apart: each voice as one
    monophonic line (the part's lowest), comping and pad as polyphonic parts, and the
    drums' onsets. ``groove`` numbers each window's groove within ``grooves``.

    Raises ``ValueError`` when no piece has a window.
    """
    steps = bars * STEPS_PER_BAR
    melody_pitch, melody_onset, mono_pitch, mono_onset = [], [], [], []
    poly, poly_onset, drums, names, groove = [], [], [], [], []
    chords, chord_bass = [], []
    cells = steps // CELL_STEPS
    for p in pieces:
        lines = [line(p.parts[v]) for v in BAND["voices"]]
        piece_chords, piece_bass = p.cell_chords()
        for start in range(0, len(p.melody_pitch) - steps + 1, hop_bars * STEPS_PER_BAR):
            sl = slice(start, start + steps)
            if not (p.melody_pitch[sl] != REST).any():
                continue
            melody_pitch.append(p.melody_pitch[sl])
            melody_onset.append(p.melody_onset[sl])
            mono_pitch.append(np.stack([pitch[sl] for pitch, _ in lines]))
            mono_onset.append(np.stack([onset[sl] for _, onset in lines]))
            poly.append(np.stack([p.parts[r].sounding[sl] for r in BAND["poly"]]))
            poly_onset.append(np.stack([p.parts[r].onset[sl].any(axis=1) for r in BAND["poly"]]))
            drums.append(np.stack([p.parts[r].onset[sl] for r in BAND["drums"]]))
            names.append(p.name)
            groove.append(grooves.index(p.groove) if grooves else 0)
            first = start // CELL_STEPS
            chords.append(_cells(piece_chords, first, cells, NO_CHORD))
            chord_bass.append(_cells(piece_bass, first, cells, -1))
    return Windows(
        np.stack(melody_pitch),
        np.stack(melody_onset),
        np.stack(mono_pitch),
        np.stack(mono_onset),
        np.stack(poly),
        np.stack(poly_onset),
        np.stack(drums),
        names,
        np.array(groove),
        np.stack(chords).astype(np.int16),
        np.stack(chord_bass).astype(np.int16),
    )


def _cells(values: np.ndarray, first: int, cells: int, fill: int) -> np.ndarray:
    """``cells`` values from ``first``, padded with ``fill`` past the end."""
    out = np.full(cells, fill, np.int16)
    got = values[first : first + cells]
    out[: len(got)] = got
    return out
