"""The harmony table (``deepkeys evaluate-harmony``), on a song written in POP909's layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from pop909_layout import write_song

from conftest import run_cli

pytest.importorskip("tensorflow")  # host code

from deepkeys.host.data import pop909
from deepkeys.host.harmony.evaluate import format_table, harmony_table, pop909_test_phrases


def test_every_part_follows_the_chords_it_is_given(tmp_path: Path):
    song = pop909.parse_song(write_song(tmp_path / "001", bars=16))
    assert isinstance(song, pop909.Song)
    result = harmony_table(["rock"], phrases=pop909_test_phrases([song])[:2])
    table = result["table"]
    assert result["phrases"] == 2
    # The song's own piano holds C-E-G under every bar: it is judged by what it plays.
    assert table["the song's own piano (a person)"]["chord_tones"] > 0.6
    # Given the song's chords, the band plays them: the estimator reads them back.
    assert table["rock: true chords"]["root"] >= 0.75
    for how in ("model", "rule", "true"):
        row = table[f"rock: {how} chords"]
        assert 0 <= row["root"] <= 1 and 0 <= row["coherence"] <= 1
    # The song's own chords against its melody (Yeh et al.'s PCS and CTnCTR): its tune
    # sits on C-E-G, so the chord tones' share and the consonance are high.
    own = table["the pieces' own chords"]
    assert own["ctnctr"] > 0.6 and own["pcs"] > 0.3
    assert -1 <= table["rock: model chords"]["pcs"] <= 1
    text = format_table(result)
    assert "| rock: true chords |" in text and "held-out pop909 phrases" in text


def test_the_chorales_are_measured_against_bachs_own_voices():
    result = harmony_table(["chorale"], count=3, source="chorale")
    table = result["table"]
    assert result["phrases"] == 3
    bach = table["Bach's own alto, tenor and bass"]
    # Bach's voices are where the reference chords were read from.
    assert bach["root"] > 0.6 and bach["chord_tones"] > 0.6
    assert table["chorale: true chords"]["root"] > table["chorale: rule chords"]["root"] - 0.2


def test_a_song_without_a_phrase_says_so(tmp_path: Path):
    song = pop909.parse_song(write_song(tmp_path / "002", bars=4))
    assert isinstance(song, pop909.Song)
    with pytest.raises(Exception, match="no 8-bar phrase"):
        harmony_table(["rock"], phrases=pop909_test_phrases([song]))


def test_the_command_refuses_bad_arguments_in_one_line():
    result = run_cli("evaluate-harmony", "--genre", "rock", "--phrases", "0")
    assert result.returncode == 2
    assert "--phrases: must be a whole number of at least 1, not '0'" in result.stderr
    assert "Traceback" not in result.stderr
