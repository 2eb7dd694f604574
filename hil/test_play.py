"""Keys into the virtual keyboard port come out of JACK: those pitches, in that order, on time."""

from __future__ import annotations

import time

from deepkeys.hil.analysis import detect_pitch, onset_after
from deepkeys.hil.rig import Rig

MELODY = [60, 64, 67, 72, 69, 65, 62, 55]  # wide leaps: a wrong octave or neighbour shows
STEP_S, HOLD_S = 0.35, 0.15


def play(rig: Rig, notes: list[int]) -> None:
    for n in notes:
        rig.keyboard.note_on(n, 100)
        time.sleep(HOLD_S)
        rig.keyboard.note_off(n)
        time.sleep(STEP_S - HOLD_S)


def heard(rig: Rig, notes: list[int]) -> list[tuple[int, int, float]]:
    """For each tapped key: (key's sample, its onset's sample, detected pitch)."""
    rec = rig.recorder
    audio, rate = rec.audio(), rec.rate
    tapped = rec.tapped()
    assert [t.note for t in tapped] == notes, "the keys did not all enter JACK, in order"
    out = []
    for i, key in enumerate(tapped):
        start = key.sample
        end = tapped[i + 1].sample if i + 1 < len(tapped) else len(audio)
        onset = onset_after(audio, start, rate, within_s=(end - start) / rate)
        assert onset is not None, f"key {key.note} made no sound before the next key"
        segment = audio[onset + rate // 100 : onset + rate // 100 + int(0.15 * rate)]
        out.append((key.sample, onset, detect_pitch(segment, rate)))
    return out


def test_a_melody_sounds_in_order_at_the_right_times(rig: Rig) -> None:
    rig.recorder.clear()
    time.sleep(0.2)
    play(rig, MELODY)
    time.sleep(0.4)
    result = heard(rig, MELODY)
    pitches = [round(p) for _, _, p in result]
    assert pitches == MELODY
    assert all(abs(p - round(p)) < 0.3 for _, _, p in result)  # in tune, not between keys
    # Each key sounds after it entered JACK and before the next key did (heard() found
    # it there): the sound belongs to its own key. Latency figures: `deepkeys bench e2e`.
    keys = [k for k, _, _ in result]
    onsets = [o for _, o, _ in result]
    assert all(k <= o for k, o in zip(keys, onsets))
    assert onsets == sorted(onsets)
    status = rig.status()
    assert status["midi"]["counts"]["note_on"] == len(MELODY)
