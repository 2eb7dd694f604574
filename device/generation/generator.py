"""A genre model on LiteRT: a melody in, accompaniment voices out.

The generator loads a model card, refuses a model whose sha256, tensor names,
shapes or int8 parameters differ from the card, and runs phrase by phrase:

- a melody shorter than the model's phrase is looped to fill it, and the output cut
  back to the melody's length;
- a longer one is accompanied phrase after phrase; a last, partial phrase is run on
  the final full-length window so it still sees a whole phrase of context;
- a melody far from the register the model learned is moved by whole octaves for
  the model and its accompaniment moved back, so any key and register works.

Variation comes from the seed: it draws the noise input and the temperature
sampling of each note (see ``decode``). The same seed gives the same output.

>>> gen = Generator(load_card("models/chorale.json"))         # doctest: +SKIP
>>> result = gen.accompany(melody.notes, melody.n_steps, seed=1)  # doctest: +SKIP
>>> sorted(result.parts), result.groove                          # doctest: +SKIP
(['alto', 'bass', 'tenor'], None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepkeys.device.encoding import REST, Note, notes_to_voice
from deepkeys.device.errors import UserError, first_line
from deepkeys.device.generation.card import ModelCard, TensorSpec, load_card
from deepkeys.device.generation.decode import decode_track
from deepkeys.device.quiet import captured_stderr

Voice = tuple[np.ndarray, np.ndarray]  # a melody window: (pitch, onset) over steps


def _interpreter_class() -> type:
    # Imported on first use: reading cards and listing genres must not load LiteRT.
    # ai-edge-litert only: tflite-runtime breaks with numpy 2 and with current models.
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


class Generator:
    def __init__(self, card: ModelCard, threads: int = 1) -> None:
        self.card = card
        path = card.model_path
        try:
            # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" from C when the
            # delegate is applied; allocating here applies it inside the capture.
            with captured_stderr(keep=lambda line: "XNNPACK delegate" not in line):
                interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
                self._runner = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"{path}: not a loadable LiteRT model ({first_line(exc)})") from None
        self._interpreter = interpreter
        self._check(self._runner.get_input_details(), card.inputs, "input")
        self._check(self._runner.get_output_details(), card.outputs, "output")

    @classmethod
    def from_card(cls, card_path: str | Path, threads: int = 1) -> Generator:
        return cls(load_card(card_path), threads)

    def _check(self, details: dict, expected: dict[str, TensorSpec], what: str) -> None:
        path = self.card.model_path
        if set(details) != set(expected):
            raise UserError(
                f"{path}: {what}s {sorted(details)} do not match its card ({sorted(expected)})"
            )
        for name, spec in expected.items():
            d = details[name]
            scale, zero = d["quantization"]
            if tuple(d["shape"]) != spec.shape or d["dtype"] != np.int8:
                raise UserError(
                    f"{path}: {what} {name!r} is {d['dtype'].__name__}"
                    f"{list(d['shape'])}, its card says int8{list(spec.shape)}"
                )
            if not np.isclose(scale, spec.scale, rtol=1e-5) or zero != spec.zero_point:
                raise UserError(f"{path}: {what} {name!r} quantization does not match its card")

    # --- one phrase -------------------------------------------------------------------
    def infer(
        self, melody_pitch: np.ndarray, melody_onset: np.ndarray, noise: np.ndarray
    ) -> dict[str, np.ndarray]:
        """One phrase: melody voice (steps,) -> dequantized outputs, batch removed."""
        card = self.card
        roll = np.zeros((card.steps, card.n_pitches, 2), dtype=np.float32)
        t = np.flatnonzero((melody_pitch >= card.pitch_low) & (melody_pitch <= card.pitch_high))
        roll[t, melody_pitch[t] - card.pitch_low, 0] = 1.0
        roll[t, melody_pitch[t] - card.pitch_low, 1] = melody_onset[t]
        feeds = {"melody": roll[None], "noise": noise.reshape(card.inputs["noise"].shape)}
        out = self._runner(**{k: _quantize(v, card.inputs[k]) for k, v in feeds.items()})
        return {k: _dequantize(v, card.outputs[k])[0] for k, v in out.items()}

    # --- a whole melody ---------------------------------------------------------------
    def accompany(
        self,
        melody: Sequence[Note],
        n_steps: int,
        seed: int = 0,
        temperature: float | None = None,
        groove: int | None = None,
    ) -> Accompaniment:
        """The notes of every track of the card, within ``n_steps``, and the groove played.

        A style genre plays one of its grooves throughout: ``groove`` (an index into
        ``card.grooves``) or, by default, one the seed picks.
        """
        card = self.card
        temperature = card.playback.temperature if temperature is None else temperature
        rng = np.random.default_rng(seed)
        if card.grooves:
            groove = int(rng.integers(len(card.grooves))) if groove is None else groove
            if not 0 <= groove < len(card.grooves):
                raise UserError(f"groove {groove} is not one of {len(card.grooves)}")
        groove_name = card.grooves[groove] if card.grooves and groove is not None else None
        pitch, onset = notes_to_voice(melody, n_steps)
        shift = self._octave_shift(pitch)
        pitch = np.where(pitch == REST, REST, pitch + shift).astype(np.int16)

        parts: dict[str, list[Note]] = {t.name: [] for t in card.tracks}
        for start, take_from in _phrases(n_steps, card.steps):
            window_pitch, window_onset = _window(pitch, onset, start, card.steps)
            noise = noise_vector(
                int(np.prod(card.inputs["noise"].shape)), len(card.grooves), groove, rng
            )
            out = self.infer(window_pitch, window_onset, noise)
            stop = min(start + card.steps, n_steps)
            for track in card.tracks:
                notes = decode_track(
                    track.kind,
                    out[track.output],
                    out.get(track.onset_output),
                    card.pitch_low,
                    temperature,
                    rng,
                    track.drum_notes,
                    track.threshold,
                )
                back = 0 if track.kind == "drums" else -shift  # drums have no register
                parts[track.name].extend(_take(notes, start, take_from, stop, back))
        return Accompaniment(parts, groove_name)

    def _octave_shift(self, pitch: np.ndarray) -> int:
        """Whole octaves that bring the melody's median to the model's learned centre."""
        sounding = pitch[pitch != REST]
        if not len(sounding):
            return 0
        return round((self.card.melody_center - float(np.median(sounding))) / 12.0) * 12


@dataclass(frozen=True)
class Accompaniment:
    """What :meth:`Generator.accompany` made: the notes of each track, by the card's track
    names, and the groove they play (None for a genre without grooves)."""

    parts: dict[str, list[Note]]
    groove: str | None = None


def noise_vector(
    size: int, n_grooves: int = 0, groove: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The model's noise input: a one-hot groove selector in the first ``n_grooves``
    values, standard normal noise in the rest. Training draws it the same way.

    >>> noise_vector(5, 2, 1, np.random.default_rng(0))[:2].tolist()
    [0.0, 1.0]
    """
    rng = rng or np.random.default_rng(0)
    noise = rng.standard_normal(size).astype(np.float32)
    if n_grooves:
        noise[:n_grooves] = 0.0
        noise[groove or 0] = 1.0
    return noise


def _phrases(n_steps: int, phrase: int) -> list[tuple[int, int]]:
    """(window start, first step to keep) for each model call.

    >>> _phrases(32, 64), _phrases(128, 64), _phrases(96, 64)
    ([(0, 0)], [(0, 0), (64, 64)], [(0, 0), (32, 64)])
    """
    if n_steps <= phrase:
        return [(0, 0)]
    calls = [(s, s) for s in range(0, n_steps - phrase + 1, phrase)]
    covered = calls[-1][0] + phrase
    if covered < n_steps:
        calls.append((n_steps - phrase, covered))
    return calls


def _take(notes: list[Note], offset: int, take_from: int, stop: int, transpose: int) -> list[Note]:
    """A phrase's notes moved to the melody's time and register, kept within
    [take_from, stop): a note cut at a phrase seam starts again there.

    >>> _take([Note(60, 0, 8), Note(62, 8, 20)], 64, 72, 80, -12)
    [Note(pitch=50, start=72, end=80, velocity=96)]
    """
    kept = []
    for n in notes:
        begin, end = max(n.start + offset, take_from), min(n.end + offset, stop)
        pitch = n.pitch + transpose
        if begin < end and 0 <= pitch <= 127:
            kept.append(Note(pitch, begin, end, n.velocity))
    return kept


def _window(pitch: np.ndarray, onset: np.ndarray, start: int, steps: int) -> Voice:
    """``steps`` steps from ``start``; a melody shorter than that is looped."""
    n = len(pitch)
    idx = (start + np.arange(steps)) % n if n < steps else start + np.arange(steps)
    p, o = pitch[idx].copy(), onset[idx].copy()
    if n < steps:  # the loop's seams start new notes
        seams = np.arange(n, steps, n)
        o[seams] |= p[seams] != REST
    return p, o


def _quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    q = np.round(x / spec.scale) + spec.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def _dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return (q.astype(np.float32) - spec.zero_point) * spec.scale
