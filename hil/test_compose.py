"""Record 4 bars through the ports with a count-in, GENRE, GENERATE: what plays is what was
saved."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mido
import pytest

from deepkeys.device.generation.card import load_card
from deepkeys.device.generation.library import genres_in
from deepkeys.hil.analysis import onset_after, read_notes
from deepkeys.hil.listen import DRIFT_S, Placement, listen, loop_start, low_share
from deepkeys.hil.rig import Rig

TEMPO = 160  # a beat is 0.375 s, a bar 1.5 s
# The arrangement is the same every run, so the listening checks judge the same notes.
# With seeds from the clock, some rock grooves play eighth notes below 90 Hz, too short
# for the pitch check to tell a semitone apart, and CI once failed on one (bass heard
# 0.50, a semitone off 0.31). Seed 0: rock's 60sRock groove, and a chorale.
SEED = 0
# Four bars of quarter notes, a hymn-like line in the chorale model's register.
MELODY = [67, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 64, 65, 67, 64, 60]


def record_take(rig: Rig, melody: list[int], press=None) -> None:
    """RECORD, count in, play one note a beat from bar 0; the take ends by itself."""
    press = press or rig.press
    mark = rig.mark()
    press("record")
    metronome = rig.wait_event(
        lambda e: e.get("action") == "start_metronome", 5, "the count-in", after=mark
    )
    beat = 60.0 / metronome["bpm"]
    bar0 = metronome["t0"] + 4 * beat * metronome["count_in_bars"]
    for i, note in enumerate(melody):
        # The daemon's clock is CLOCK_MONOTONIC too: its t0 is our time.
        time.sleep(max(0.0, bar0 + i * beat + 0.01 - time.monotonic()))
        rig.keyboard.note_on(note, 96)
        time.sleep(0.8 * beat)
        rig.keyboard.note_off(note)
    rig.wait_event(lambda e: e.get("action") == "save_take", 10, "the take", after=mark)


@pytest.mark.parametrize("target", ["rock", "chorale"])  # a band with drums; voices only
def test_record_genre_generate_plays_and_saves_what_it_played(make_rig, target) -> None:
    rig = make_rig(tempo_bpm=TEMPO, max_bars=4, count_in_bars=1, first_seed=SEED)
    rig.recorder.clear()
    record_take(rig, MELODY)
    alone = rig.recorder.audio()  # the count-in and the melody, nothing else
    rig.wait_for(lambda: rig.status().get("take_bars") == 4, 2, "a 4-bar take in the status")

    genres = rig.status()["genres"]
    assert target in genres, f"{target} is not installed ({genres})"
    for _ in genres:  # GENRE steps through the installed genres
        before = rig.status()["genre"]
        rig.press("genre")
        time.sleep(0.2)  # the status snapshot is rebuilt every 50 ms
        genre = rig.status()["genre"]
        assert genre == genres[(genres.index(before) + 1) % len(genres)]
        if genre == target:
            break

    rig.recorder.clear()
    mark = rig.mark()
    rig.press("generate")
    rig.wait_event(lambda e: e.get("action") == "start_playback", 10, "playback", after=mark)
    saved = rig.wait_event(lambda e: e.get("event") == "saved", 10, "the saved file", after=mark)
    loop_s = 4 * 4 * 60.0 / TEMPO
    rig.recorder.wait_frames(int((loop_s + 1.0) * rig.recorder.rate))
    rig.press("play")  # PLAY/STOP while playing: stop
    rig.wait_event(lambda e: e.get("action") == "stop_playback", 5, "stop", after=mark)

    # The file: the melody as played, then the card's tracks.
    card = load_card(genres_in(rig.options.models)[genre])
    assert json.loads(Path(saved["json"]).read_text())["seed"] == SEED
    tracks = read_notes(saved["mid"])
    assert list(tracks) == ["melody", *[t.name for t in card.tracks]]
    assert [n.pitch for n in tracks["melody"]] == MELODY, rig.status().get("midi")
    assert mido.MidiFile(saved["mid"]).length > 0.9 * loop_s

    # The sound: where the saved file's opening is found in the recording (all was quiet
    # before GENERATE), and it is not found before the first onset.
    audio, rate = rig.recorder.audio(), rig.recorder.rate
    onset = onset_after(audio, 0, rate, within_s=2.0)
    assert onset is not None, "nothing played after GENERATE"
    start = loop_start(audio, rate, saved["mid"])
    assert start is not None, "what played does not begin as the saved file does"
    assert start <= onset
    at = Placement.follow(audio, rate, start, saved["mid"], loop_s)
    # A move is time the rig's xruns took out of the recording. One at the edge of the
    # search went further: that is not the rig but the daemon playing out of time.
    assert at.drift_s < DRIFT_S, f"the loop drifted {at.drift_s * 1e3:.0f} ms"
    report = listen(audio, at, tracks, list(card.tracks))
    low = [t for t in card.tracks if t.is_drum or t.channel == 9 or "bass" in t.name]
    assert low, f"genre {genre}: no bass or drums track in its card"
    for name in ["melody", *(t.name for t in low)]:
        assert report[name].checked >= 4, f"{name}: too few notes to check ({report[name]})"
    for name, r in report.items():
        if r.checked < 4:  # a part that rests most of the loop (a pad may): nothing to judge
            continue
        if name == "melody" or r.kind == "drums":
            assert r.present >= 0.75, f"{name}: the file's notes were not heard ({r})"
        else:
            # A band's bass shares the low end with kick, toms and comping, and a soft
            # acoustic bass's fundamental is weak: its notes stand out less often, but
            # far more often than the same notes a semitone off.
            assert r.shifted is not None and r.present >= r.shifted + 0.3, (
                f"{name}: the file's notes sound no more than a semitone off ({r})"
            )
        if r.kind == "melodic" and r.shifted is not None:
            assert r.shifted <= 0.5, f"{name}: a semitone off sounds as good ({r})"
    # The genre's low end: its bass part (or drums) puts energy below the melody's range,
    # many times what the melody alone had there.
    loop = audio[start : start + int(loop_s * rate)]
    below = min(MELODY) - 2
    assert low_share(loop, rate, below) > 5 * low_share(alone, rate, below)
