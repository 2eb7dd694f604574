"""Training windows of one genre, whatever their source, as the trainer consumes them.

A window is a melody plus the accompaniment tracks of a
:class:`~deepkeys.host.model.GeneratorConfig`: monophonic voices (pitch + onset),
polyphonic parts (a 128-pitch roll + chord onsets) and drum parts (class onsets).
Chorales fill only the voices; MMA renders and users' files fill the band's tracks
(:data:`deepkeys.host.data.band.BAND`).

:meth:`Windows.transposed` shifts each window by a random number of semitones (the
melody and every pitched part together; drums stay) and :meth:`Windows.arrays` builds
the model's inputs and targets.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np

from deepkeys.device.chords import N_QUALITIES, NO_CHORD, Chord, chord_of_weights, chord_steps
from deepkeys.device.encoding import REST
from deepkeys.device.generation.harmony import CELL_STEPS

if TYPE_CHECKING:  # TensorFlow takes seconds to import: the data preparation's workers
    from deepkeys.host.model import GeneratorConfig  # never need it, only inputs/arrays

# The chord qualities the chorales are reduced to (MMA plays every one of them).
REDUCTION_QUALITIES = ("maj", "min", "7", "min7", "dim")


@dataclass
class Windows:
    melody_pitch: np.ndarray  # (N, T) int16, REST = -1
    melody_onset: np.ndarray  # (N, T) bool
    mono_pitch: np.ndarray  # (N, Vm, T) int16
    mono_onset: np.ndarray  # (N, Vm, T) bool
    poly: np.ndarray  # (N, Vp, T, 128) bool: which MIDI pitches sound
    poly_onset: np.ndarray  # (N, Vp, T) bool: a chord starts here
    drums: np.ndarray  # (N, Vd, T, classes) bool onsets
    names: list[str]  # the piece each window comes from
    groove: np.ndarray  # (N,) int: which of the genre's grooves accompanies it (0 if one)
    chords: np.ndarray  # (N, C) int16 chord token of each half-bar cell (device.chords)
    chord_bass: np.ndarray  # (N, C) int16 the bass pitch class of each cell's chord, -1 = root

    def __len__(self) -> int:
        return len(self.melody_pitch)

    def take(self, idx: np.ndarray) -> Windows:
        """The windows at the indices ``idx``, in that order."""
        arrays = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "names"}
        return replace(self, **arrays, names=[self.names[i] for i in idx])

    @classmethod
    def concat(cls, parts: list[Windows]) -> Windows:
        """The windows of ``parts``, one after another (at least one part)."""
        arrays = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(cls)
            if f.name != "names"
        }
        return cls(**arrays, names=[n for p in parts for n in p.names])

    @classmethod
    def voices_only(cls, pitch: np.ndarray, onset: np.ndarray, names: list[str]) -> Windows:
        """Chorale windows: (N, 4, T) voices, the first being the melody."""
        n, _, steps = pitch.shape
        tokens, bass = voices_chords(pitch)
        return cls(
            pitch[:, 0],
            onset[:, 0],
            pitch[:, 1:],
            onset[:, 1:],
            np.zeros((n, 0, steps, 128), bool),
            np.zeros((n, 0, steps), bool),
            np.zeros((n, 0, steps, 0), bool),
            list(names),
            np.zeros(n, np.int32),
            tokens,
            bass,
        )

    def transposed(
        self, rng: np.random.Generator, low: int, high: int, max_shift: int = 6
    ) -> Windows:
        """Each window shifted by a random semitone count that keeps every pitch in
        [low, high]; a window that no shift fits stays as it is. Every key once."""
        n = len(self)
        lo = np.full(n, 127)
        hi = np.full(n, 0)
        for pitch in (self.melody_pitch[:, None], self.mono_pitch):
            sounding = pitch != REST
            lo = np.minimum(lo, np.where(sounding, pitch, 127).min(axis=(1, 2), initial=127))
            hi = np.maximum(hi, np.where(sounding, pitch, 0).max(axis=(1, 2), initial=0))
        if self.poly.shape[1]:
            any_pitch = np.any(self.poly, axis=(1, 2))  # (N, 128)
            has = any_pitch.any(axis=1)
            lo = np.where(has, np.minimum(lo, any_pitch.argmax(axis=1)), lo)
            hi = np.where(has, np.maximum(hi, 127 - any_pitch[:, ::-1].argmax(axis=1)), hi)
        shifts = np.arange(-max_shift, max_shift)
        ok = (lo[:, None] + shifts >= low) & (hi[:, None] + shifts <= high)
        ok[:, max_shift] |= ~ok.any(axis=1)
        # A random key per admissible shift; the largest key picks uniformly among them.
        shift = shifts[np.where(ok, rng.random(ok.shape), -1.0).argmax(axis=1)]

        def move(pitch: np.ndarray) -> np.ndarray:
            k = shift.reshape((-1,) + (1,) * (pitch.ndim - 1))
            return np.where(pitch != REST, pitch + k, REST).astype(np.int16)

        poly = self.poly.copy()
        if poly.shape[1]:
            for i, k in enumerate(shift):
                poly[i] = np.roll(poly[i], k, axis=-1)
        roots = self.chords // N_QUALITIES
        moved_roots = (roots + shift[:, None]) % 12
        chords = np.where(
            self.chords == NO_CHORD, NO_CHORD, moved_roots * N_QUALITIES + self.chords % N_QUALITIES
        ).astype(np.int16)
        bass = np.where(self.chord_bass < 0, -1, (self.chord_bass + shift[:, None]) % 12)
        return replace(
            self,
            melody_pitch=move(self.melody_pitch),
            mono_pitch=move(self.mono_pitch),
            poly=poly,
            chords=chords,
            chord_bass=bass.astype(np.int16),
        )

    def inputs(self, cfg: GeneratorConfig) -> dict[str, np.ndarray]:
        """The generator's conditioning inputs: melody (N, T, P, 2) and chords (N, T, 37)."""
        from deepkeys.host.model import melody_tensor

        return {
            "melody": melody_tensor(self.melody_pitch, self.melody_onset, cfg),
            "chords": chord_steps(self.chords, self.chord_bass, CELL_STEPS),
        }

    def arrays(self, cfg: GeneratorConfig) -> dict[str, np.ndarray]:
        """Model input and targets: melody (N, T, P, 2); per kind, targets and onsets."""
        from deepkeys.host.model import melody_tensor, voice_targets

        window = slice(cfg.pitch_low, cfg.pitch_high + 1)
        return {
            "melody": melody_tensor(self.melody_pitch, self.melody_onset, cfg),
            "mono": voice_targets(self.mono_pitch, cfg).transpose(0, 2, 1),  # (N, T, Vm)
            "mono_onset": self.mono_onset.transpose(0, 2, 1).astype(np.float32),
            "poly": self.poly[..., window].transpose(0, 2, 1, 3).astype(np.float32),  # (N,T,Vp,P)
            "poly_onset": self.poly_onset.transpose(0, 2, 1).astype(np.float32),
            "drums": self.drums.transpose(0, 2, 1, 3).astype(np.float32),  # (N, T, Vd, D)
            "groove": self.groove.astype(np.int32),
            "chords": chord_steps(self.chords, self.chord_bass, CELL_STEPS),  # (N, T, 37)
        }


def voices_chords(pitch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chorale voices (N, V, T), bass last -> each half bar's chord token and bass class."""
    n, _, steps = pitch.shape
    cells = steps // CELL_STEPS
    tokens = np.full((n, cells), NO_CHORD, np.int16)
    bass = np.full((n, cells), -1, np.int16)
    for i in range(n):
        for c in range(cells):
            chord = chord_of_voices(pitch[i, :, c * CELL_STEPS : (c + 1) * CELL_STEPS])
            tokens[i, c] = chord.token
            bass[i, c] = -1 if chord.bass is None else chord.bass
    return tokens, bass


def chord_of_voices(pitch: np.ndarray) -> Chord:
    """The chord that best explains a slice of voices (V, T), bass voice last.

    Each pitch class is weighted by how long it sounds, the bass twice, and read by
    :func:`~deepkeys.device.chords.chord_of_weights` with the bass's first note as the
    bass, in the qualities the chorales are reduced to.

    >>> chord_of_voices(np.array([[67] * 4, [64] * 4, [60] * 4, [48] * 4])).name
    'C'
    >>> chord_of_voices(np.array([[69] * 4, [60] * 4, [57] * 4, [52] * 4])).name
    'Am/E'
    """
    weights = np.zeros(12)
    for v, voice in enumerate(pitch):
        np.add.at(weights, voice[voice != REST] % 12, 2.0 if v == len(pitch) - 1 else 1.0)
    bass = pitch[-1][pitch[-1] != REST]
    return chord_of_weights(weights, int(bass[0] % 12) if len(bass) else None, REDUCTION_QUALITIES)
