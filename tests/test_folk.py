"""The folk-tune pipeline: small ABC tunes written here, and the corpus's Nottingham reels."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("music21")

from deepkeys.device.chords import NO_CHORD, Chord
from deepkeys.device.encoding import CHORD_STEPS, REST, STEPS_PER_BAR
from deepkeys.host.data import folk

# A one-beat pickup; a slash chord (lower-case bass, as ABC writes it) on the second half
# of bar 2; in bar 3 a chord Chord.parse cannot name (C11), then D7 a beat later, which
# sounds from the next half bar on; a 5th bar with one chord.
TUNE = """X:7
T:The Test Reel
M:C
L:1/8
K:G
D2|"G"G2 A2 B2 c2|d2 c2 "Am/c"B2 A2|"C11"G2 "D7"F2 E2 D2|"G"G8|]
"""
WALTZ = """X:8
T:A Waltz
M:3/4
L:1/8
K:G
"G"G2 A2 B2|"D"A6|"G"G2 A2 B2|"D"A6|"G"G6|]
"""


@pytest.fixture(scope="module")
def tune() -> folk.FolkTune:
    return folk.parse_tune(TUNE, "test/tune/7")


def names(tokens: np.ndarray) -> list[str]:
    return [Chord.from_token(int(t)).name for t in tokens]


def test_half_bar_chords(tune):
    assert names(tune.chords) == ["N", "N", "G", "G", "G", "Am", "N", "D7", "G", "G"]
    assert tune.chords.dtype == np.int16 and tune.chords[0] == NO_CHORD
    # The slash bass travels beside the token (which has none): C under Am, else the root.
    assert tune.bass.tolist() == [-1] * 5 + [0] + [-1] * 4
    assert tune.unparsed == ("C11",)
    assert tune.title == "The Test Reel"


def test_pickup_ends_a_leading_bar_and_bar_lines_fall_on_16(tune):
    assert tune.pitch.dtype == np.int16 and tune.onset.dtype == bool
    assert len(tune.pitch) == len(tune.onset) == 5 * STEPS_PER_BAR and tune.bars == 5
    assert len(tune.chords) == len(tune.pitch) // CHORD_STEPS
    assert (tune.pitch[:12] == REST).all() and not tune.onset[:12].any()
    assert tune.onset[12] and tune.pitch[12] == 62  # the pickup D4, steps 12..16
    # Each full bar's first note is on a bar line: G4, D5, G4, G4.
    assert [int(tune.pitch[s]) for s in (16, 32, 48, 64)] == [67, 74, 67, 67]
    assert tune.onset[[16, 32, 48, 64]].all()
    assert (tune.pitch[64:] == 67).all() and tune.onset[64:].sum() == 1  # G8 fills bar 5


def test_other_meters_are_skipped_with_the_meter(tmp_path: Path):
    path = tmp_path / "book.abc"
    path.write_text(TUNE + "\n" + WALTZ)
    parsed = folk.parse_file(path, "mine")
    assert list(parsed) == ["mine/book/7", "mine/book/8"]
    assert isinstance(parsed["mine/book/7"], folk.FolkTune)
    assert parsed["mine/book/8"] == "meter 3/4"
    assert next(iter(folk.parse_file(path))) == f"{tmp_path.name}/book/7"  # by its folder


@pytest.mark.parametrize(
    ("abc", "reason"),
    [
        ('X:1\nM:C\nL:1/4\nK:C\nCDEF|GABc|cBAG|FEDC|"4"C4|]\n', "no chord symbols"),
        ('X:1\nM:C\nL:1/4\nK:C\n"C"CDEF|GABc|"G"cBAG|]\n', "fewer than 4 bars"),
        ('X:1\nM:C\nL:1/4\nK:C\n"C"CDEF|GABc|cBAG|FEDC|"C"C4|]\n', "fewer than 2 distinct chords"),
        # Section letters, not harmony: two symbols in twelve bars.
        (
            'X:1\nM:C\nL:1/4\nK:C\n"A"' + "CDEF|" * 6 + '"B"' + "GABc|" * 6 + "]\n",
            "under a quarter",
        ),
        ('X:1\nM:none\nL:1/4\nK:C\n"C"CDEF|"G"GABc|"C"cBAG|"G"FEDC|"C"C4|]\n', "meter none"),
    ],
)
def test_skip_reasons(abc: str, reason: str):
    with pytest.raises(folk.SkipTune, match=reason):
        folk.parse_tune(abc)


def test_two_four_bars_make_no_4_4_bar():
    with pytest.raises(folk.SkipTune, match="meter 2/4"):
        folk.parse_tune(TUNE.replace("M:C", "M:2/4"))
    assert folk.parse_tune(TUNE.replace("M:C", "M:C|")).chords.tolist() == [
        Chord.parse(n).token if n != "N" else NO_CHORD
        for n in ["N", "N", "G", "G", "G", "Am", "N", "D7", "G", "G"]
    ]


def test_layout_and_doctests():
    # A second strain's pickup that follows a full bar leads into the next bar.
    assert folk.layout([16, 16, 4, 16], [False, False, False, False]) == [0, 16, 44, 48]
    # A strain's short last bar (a repeat end) starts on a bar line.
    assert folk.layout([4, 16, 12, 16], [False, False, True, False]) == [12, 16, 32, 48]
    assert doctest.testmod(folk).failed == 0


def test_nottingham_reels_match_music21():
    """Every chord symbol music21 reads lands in the cell its step names."""
    from music21 import converter, harmony, stream

    path = folk.corpus_root() / "nottingham-dataset" / "reelsa-c.abc"
    parsed = folk.parse_file(path)
    assert sorted(parsed) == ["nottingham-dataset/reelsa-c/80", "nottingham-dataset/reelsa-c/81"]
    little_czech = parsed["nottingham-dataset/reelsa-c/81"]
    assert isinstance(little_czech, folk.FolkTune) and little_czech.unparsed == ("D/F+",)
    opus = converter.parse(path)
    assert isinstance(opus, stream.Opus)
    score = opus.scores[1]
    measures = list(score.parts[0].getElementsByClass(stream.Measure))
    lengths = [round(m.duration.quarterLength * 4) for m in measures]
    # Its first ending is a 3-beat bar; the second ending must still start on a bar line.
    assert lengths[:10] == [4] + [16] * 7 + [12, 16]
    starts = folk.layout(lengths, [m.rightBarline is not None for m in measures])
    assert starts[8:10] == [128, 144]
    for m, start in zip(measures, starts):
        for cs in m.getElementsByClass(harmony.ChordSymbol):
            step = start + round(cs.offset * 4)
            if step % CHORD_STEPS or cs.figure == "D/f+":
                continue  # off a half bar: overridden or never heard; D/f+: no chord
            cell = step // CHORD_STEPS
            chord = Chord.from_token(int(little_czech.chords[cell]))
            assert chord.root == cs.root().pitchClass, (cell, cs.figure)
            bass = cs.bass().pitchClass
            assert little_czech.bass[cell] == (-1 if bass == chord.root else bass), cs.figure


def test_cache_round_trip(tmp_path: Path, tune):
    path = tmp_path / "folk.npz"
    skipped = {"mine/book/8": "meter 3/4"}
    folk._write_cache(path, [tune, tune], skipped)
    back, back_skipped = folk._read_cache(path)
    assert back_skipped == skipped and len(back) == 2
    for t in back:
        assert t.name == tune.name and t.title == tune.title and t.unparsed == tune.unparsed
        for field in ("pitch", "onset", "chords", "bass"):
            a, b = getattr(t, field), getattr(tune, field)
            assert a.dtype == b.dtype and np.array_equal(a, b)
    folk._write_cache(path, [], skipped)  # nothing kept: still a valid cache
    assert folk._read_cache(path) == ([], skipped)


def test_split_keeps_copies_of_a_tune_together(tune):
    def copy(i: int, title: str, shift: int) -> folk.FolkTune:
        pitch = np.where(tune.pitch == REST, REST, tune.pitch + shift).astype(np.int16)
        return folk.FolkTune(f"c/f/{i}", title, pitch, tune.onset, tune.chords, tune.bass)

    rng = np.random.default_rng(1)
    tunes = []
    for i in range(60):  # 60 different melodies, each under its own title...
        pitch = rng.integers(60, 80, len(tune.pitch)).astype(np.int16)
        onset = np.ones(len(pitch), bool)
        tunes.append(folk.FolkTune(f"c/f/{i}", f"Tune {i}", pitch, onset, tune.chords, tune.bass))
    # ...plus one title printed twice over different settings, and one melody under two titles.
    tunes += [copy(100, "The Test Reel", 0), copy(101, "Test Reel, The", 5)]
    tunes += [copy(102, "Tune 3", 0)]  # same title as c/f/3, same melody as c/f/100
    split = folk.make_split(tunes, seed=0)
    assert split == folk.make_split(tunes, seed=0)  # deterministic
    assert sorted(n for names in split.values() for n in names) == sorted(t.name for t in tunes)
    where = {n: k for k, v in split.items() for n in v}
    assert where["c/f/100"] == where["c/f/101"] == where["c/f/102"] == where["c/f/3"]
    assert len(split["test"]) >= 6 and len(split["validation"]) >= 6


def test_committed_split_is_disjoint():
    split = folk.load_split()
    assert set(split) == {"train", "validation", "test"}
    everything = [n for names in split.values() for n in names]
    assert len(everything) == len(set(everything)) > 0
