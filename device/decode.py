"""From a model's per-step probabilities to notes the synth can play.

A monophonic track arrives as a softmax over the pitch window plus a rest class at
every step, and an onset probability. Sampling each step on its own would make
notes flicker between pitches, so decoding works on *segments*: a segment starts
where the onset fires or where the most likely class changes, and one class is
drawn per segment from its averaged distribution, sharpened or flattened by the
temperature. The same code decodes on the device and in the host's evaluation, so
the metrics describe what the player hears.

>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])   # pitch window of 1 + rest
>>> decode_voice(probs, np.array([0.9, 0.1, 0.0]), pitch_low=60)
(array([60, 60, -1], dtype=int16), array([ True, False, False]))
"""

from __future__ import annotations

import numpy as np

from .encoding import REST

ONSET_THRESHOLD = 0.5


def decode_voice(
    probs: np.ndarray,
    onset_prob: np.ndarray,
    pitch_low: int,
    temperature: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (T, P+1) and onset (T,) -> voice ``(pitch, onset)``.

    ``temperature`` 0 takes the likeliest class of each segment; above 0 it samples
    from the segment's distribution raised to ``1 / temperature``.
    """
    steps, n_classes = probs.shape
    rest_class = n_classes - 1
    best = probs.argmax(axis=1)
    fired = onset_prob >= ONSET_THRESHOLD
    boundary = np.ones(steps, dtype=bool)
    boundary[1:] = (best[1:] != best[:-1]) | (fired[1:] & (best[1:] != rest_class))
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], steps)

    pitch = np.full(steps, REST, dtype=np.int16)
    onset = np.zeros(steps, dtype=bool)
    previous = rest_class
    for start, end in zip(starts, ends):
        choice = _choose(probs[start:end].mean(axis=0), temperature, rng)
        if choice != rest_class:
            pitch[start:end] = pitch_low + choice
            # Two segments that end up on one pitch are one note unless the model
            # asked for a re-attack there.
            onset[start] = choice != previous or bool(fired[start])
        previous = choice
    return pitch, onset


def _choose(p: np.ndarray, temperature: float, rng: np.random.Generator | None) -> int:
    if temperature <= 0 or rng is None:
        return int(p.argmax())
    logp = np.log(np.maximum(p, 1e-9)) / temperature
    w = np.exp(logp - logp.max())
    return int(rng.choice(len(w), p=w / w.sum()))
