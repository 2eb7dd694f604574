"""From a model's per-step probabilities to notes the synth can play.

A monophonic track arrives as a softmax over the pitch window plus a rest class at
every step, and an onset probability. Sampling each step on its own would make
notes flicker between pitches, so decoding lets the onset head decide where notes
begin: a note starts where the onset fires (or where silence ends) and lasts until
the next onset or silence. Each note then takes one pitch, drawn from the averaged
distribution of its steps, sharpened or flattened by the temperature.

The same code decodes on the device and in the host's evaluation, so the metrics
describe what the player hears. Deciding boundaries by the argmax instead broke
notes into fragments: 68 % of notes were an 8th or longer against 96 % in Bach.

>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])   # pitch window of 1 + rest
>>> decode_voice(probs, np.array([0.9, 0.1, 0.0]), pitch_low=60)
(array([60, 60, -1], dtype=int16), array([ True, False, False]))
"""

from __future__ import annotations

import numpy as np

from .encoding import REST

# Chosen on the validation split: 0.5 gives too few notes (pitch classes per bar
# 15 % below Bach's), lower values fragment them.
ONSET_THRESHOLD = 0.45


def decode_voice(
    probs: np.ndarray,
    onset_prob: np.ndarray,
    pitch_low: int,
    temperature: float = 0.0,
    rng: np.random.Generator | None = None,
    onset_threshold: float = ONSET_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (T, P+1) and onset (T,) -> voice ``(pitch, onset)``.

    ``temperature`` 0 takes the likeliest pitch of each note; above 0 it samples
    from the note's distribution raised to ``1 / temperature``.
    """
    steps, n_classes = probs.shape
    rest_class = n_classes - 1
    silent = probs.argmax(axis=1) == rest_class
    boundary = np.ones(steps, dtype=bool)
    boundary[1:] = (silent[1:] != silent[:-1]) | ((onset_prob[1:] >= onset_threshold) & ~silent[1:])
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], steps)

    pitch = np.full(steps, REST, dtype=np.int16)
    onset = np.zeros(steps, dtype=bool)
    for start, end in zip(starts, ends):
        if silent[start]:
            continue
        choice = _choose(probs[start:end, :rest_class].mean(axis=0), temperature, rng)
        pitch[start:end] = pitch_low + choice
        onset[start] = True
    return pitch, onset


def _choose(p: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    if temperature <= 0 or rng is None:
        return int(p.argmax())
    logp = np.log(np.maximum(p, 1e-9)) / temperature
    w = np.exp(logp - logp.max())
    return int(rng.choice(len(w), p=w / w.sum()))
