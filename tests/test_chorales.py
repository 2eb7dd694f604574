"""The Bach chorale pipeline: a few real chorales parsed against music21, the rest synthetic."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest

pytest.importorskip("music21")
from music21 import corpus, stream

from deepkeys.device.encoding import REST, Note, notes_to_voice, voice_to_notes
from deepkeys.host.data import chorales as ch

PICKUP, PLAIN = "bwv315", "bwv26.6"  # a one-beat pickup (and a grace note); none


@pytest.fixture(scope="module")
def parsed() -> dict[str, ch.Chorale]:
    return {name: ch.parse_chorale(name) for name in (PICKUP, PLAIN)}


@functools.cache
def score(name: str) -> stream.Score:
    return corpus.parse(f"bach/{name}")


def music21_voice(name: str, voice: int) -> tuple[float, list[tuple[int, float, float]]]:
    """(offset of the first full measure, [(top pitch, start, end) in quarters]) from music21."""
    part = score(name).parts[voice]
    measures = part.getElementsByClass(stream.Measure)
    first_full = next(m for m in measures if m.duration.quarterLength == 4)
    notes = [
        (max(p.midi for p in n.pitches), float(n.offset), float(n.offset + n.quarterLength))
        for n in part.stripTies(inPlace=False).flatten().notes
        if not n.duration.isGrace  # the parser drops ornaments of no duration
    ]
    return float(first_full.offset), notes


def test_shapes_and_ranges(parsed):
    for c in parsed.values():
        assert c.pitch.dtype == np.int16 and c.onset.dtype == bool
        assert c.pitch.shape == c.onset.shape and c.pitch.shape[0] == 4
        sounding = c.pitch != REST
        assert not (c.onset & ~sounding).any()  # onsets only where a note sounds
        assert c.pitch[sounding].min() >= ch.LOW and c.pitch.max() <= ch.HIGH
        means = [c.pitch[v][sounding[v]].mean() for v in range(4)]
        assert means == sorted(means, reverse=True)  # soprano, alto, tenor, bass


def test_pickup_ends_the_first_bar(parsed):
    c = parsed[PICKUP]
    downbeat, notes = music21_voice(PICKUP, 0)
    assert downbeat == 1.0  # a one-beat pickup in music21's measures
    assert (c.pitch[:, :12] == REST).all()  # the bar is filled up with rest before the pickup
    assert c.onset[0, 12] and c.onset[0, 16]
    assert c.pitch[0, 16] == next(p for p, start, _ in notes if start == downbeat)
    # Without a pickup nothing moves: the first note is at step 0.
    assert (parsed[PLAIN].pitch[:, 0] != REST).all()


@pytest.mark.parametrize("name", [PICKUP, PLAIN])
def test_notes_match_music21(parsed, name):
    """Each voice decodes back to music21's notes: ties joined, re-attacks kept, on the grid."""
    c = parsed[name]
    for voice in range(4):
        downbeat, notes = music21_voice(name, voice)
        shift = -round(downbeat * 4) % 16
        expected = [Note(p, round(s * 4) + shift, round(e * 4) + shift) for p, s, e in notes]
        assert voice_to_notes(c.pitch[voice], c.onset[voice]) == expected


def test_ties_are_joined_and_reattacks_flagged(parsed):
    # bwv315's bass ties A3 (a quarter at beat 42 to an 8th at beat 43): one note,
    # steps 180..186 after the pickup shift, with no onset at 184.
    raw = score(PICKUP).parts[3].flatten().notes
    ties = [(float(n.offset), n.tie.type) for n in raw if n.tie]
    assert ties == [(42.0, "start"), (43.0, "stop")]
    bass = parsed[PICKUP]
    assert bass.pitch[3, 180:186].tolist() == [57] * 6
    assert bass.onset[3, 180] and not bass.onset[3, 181:186].any()
    # bwv26.6's soprano sings C5 twice in a row (two quarter notes): both onsets set.
    c = parsed[PLAIN]
    assert c.pitch[0, 8:16].tolist() == [72] * 8
    assert c.onset[0, 8:16].tolist() == [True, False, False, False, True, False, False, False]


@pytest.mark.parametrize(("name", "reason"), [("bwv269", "metre 3/4"), ("bwv1.6", "5 parts")])
def test_unfit_chorales_are_skipped_with_a_reason(name, reason):
    with pytest.raises(ch.SkipChorale, match=reason):
        ch.parse_chorale(name)


def test_cache_round_trip(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ch, "chorale_names", lambda: [PLAIN, "bwv269"])
    with caplog.at_level(logging.INFO, logger=ch.__name__):
        first = ch.load_chorales(tmp_path, workers=1)
    assert [c.name for c in first] == [PLAIN]
    assert "1 skipped (metre 3/4: 1)" in caplog.text
    assert list(tmp_path.glob("*.npz")) == [ch.cache_path(tmp_path)]

    def no_parsing() -> list[str]:
        raise AssertionError("a cache hit must not parse")

    monkeypatch.setattr(ch, "chorale_names", no_parsing)
    second = ch.load_chorales(tmp_path)
    assert [c.name for c in second] == [PLAIN]
    np.testing.assert_array_equal(second[0].pitch, first[0].pitch)
    np.testing.assert_array_equal(second[0].onset, first[0].onset)


def test_committed_split(parsed):
    split = ch.load_split()
    assert set(split) == {"train", "validation", "test"}
    sets = [set(v) for v in split.values()]
    assert sum(map(len, sets)) == len(set.union(*sets))  # no chorale in two sets
    total = sum(map(len, sets))
    for subset, share in [("train", 0.8), ("validation", 0.1), ("test", 0.1)]:
        assert abs(len(split[subset]) / total - share) < 0.03
    everything = set.union(*sets)
    assert set(parsed) <= everything
    assert "bwv269" not in everything  # skipped chorales are in no set
    # bwv69.6-a is the same chorale as bwv69.6 (identical soprano): never split apart.
    assert any({"bwv69.6", "bwv69.6-a"} <= s for s in sets)


def synthetic(name: str, soprano: list[int], n_steps: int) -> ch.Chorale:
    """Four voices in parallel fifths, one quarter note (4 steps) per pitch."""
    notes = [[Note(p - 7 * v, 4 * i, 4 * i + 4) for i, p in enumerate(soprano)] for v in range(4)]
    pitch, onset = map(np.stack, zip(*(notes_to_voice(n, n_steps) for n in notes)))
    return ch.Chorale(name, pitch, onset)


def test_tune_groups_join_variants_of_one_tune():
    tune = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 71, 69, 67, 65]
    # The same tune a 4th higher, with two notes added.
    variant = [p + 5 for p in tune[:10]] + [70, 69] + [p + 5 for p in tune[10:]]
    other = [60, 55, 57, 52, 53, 48, 53, 55, 60, 62, 59, 55, 57, 60, 58, 57]
    chorales = [synthetic("a", tune, 64), synthetic("b", other, 64), synthetic("c", variant, 72)]
    groups = ch.tune_groups(chorales)
    assert sorted(groups) == [["a", "c"], ["b"]]


def test_windows_pad_hop_and_drop_silent_soprano():
    c = synthetic("x", list(range(60, 77)), 70)  # 17 quarter notes in 70 steps: 5 bars once padded
    pitch, onset, names = ch.windows([c])
    assert pitch.shape == onset.shape == (2, 4, 64)
    assert pitch.dtype == np.int16 and onset.dtype == bool
    assert names == ["x", "x"]
    np.testing.assert_array_equal(pitch[1, :, :54], c.pitch[:, 16:70])
    assert (pitch[1, :, 54:] == REST).all() and not onset[1, :, 54:].any()  # padded last bar
    np.testing.assert_array_equal(pitch[0], c.pitch[:, :64])  # a hop of one bar
    silent = ch.Chorale("s", c.pitch.copy(), c.onset.copy())
    silent.pitch[0, 16:] = REST
    assert len(ch.windows([silent])[0]) == 1  # only the first window has a soprano
    assert ch.windows([c], bars=2, hop_bars=2)[0].shape == (2, 4, 32)  # starts 0 and 32 of 80


def test_windows_of_a_real_chorale(parsed):
    c = parsed[PLAIN]
    pitch, onset, names = ch.windows([c])
    bars = -(-c.pitch.shape[1] // 16)
    assert pitch.shape == (bars - 3, 4, 64) and names == [PLAIN] * (bars - 3)
    np.testing.assert_array_equal(onset[2], c.onset[:, 32:96])
