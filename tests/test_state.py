"""The appliance state machine: every input in every state, then whole scenarios.

The table below is the specification: for each state and each input (every button
as press, long press and repeat, each transport CC, a CC release, an unrelated CC,
a note, a tick and a generation result) the state that follows and the exact
actions, in order. Objects are named in it: TAKE (the take the composition was
made from), NEWTAKE (a take just recorded), OLD (the composition playing or last
played), NEW (a generation's result) and T (the input's time).
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from deepkeys.device.appliance.state import STATES, Appliance
from deepkeys.device.appliance.take import Take
from deepkeys.device.config import Config, KeyboardConfig, PlayerConfig
from deepkeys.device.encoding import Composition, Note, Track
from deepkeys.device.events import (
    ACTIONS,
    Action,
    Button,
    ControlChange,
    GenerationDone,
    NoteOff,
    NoteOn,
    Tick,
)

GENRES = ["chorale", "jazz", "rock"]
BAR = 2.4  # seconds, at 100 BPM


def comp(pitch: int) -> Composition:
    return Composition([Track("melody", 0, [Note(pitch, 0, 4)])], 16, 100.0)


# --------------------------------------------------------------------------- action shorthand
def led(name: str, state: str) -> Action:
    return Action("set_led", {"led": name, "state": state})


def genre(name: str, index: int | None) -> Action:
    return Action("show_genre", {"genre": name, "index": index})


def tempo(bpm: int) -> Action:
    return Action("set_tempo", {"bpm": bpm})


def log(message: str) -> Action:
    return Action("log", {"message": message})


def gen(genre_name: str, seed: int, take: str = "TAKE", bpm: int = 100) -> Action:
    return Action("start_generation", {"genre": genre_name, "seed": seed, "take": take, "bpm": bpm})


def play(composition: str) -> Action:
    return Action("start_playback", {"composition": composition, "bpm": 100})


def save(composition: str, genre_name: str, seed: int) -> Action:
    return Action(
        "save_composition", {"composition": composition, "genre": genre_name, "seed": seed}
    )


METRONOME = Action(
    "start_metronome", {"bpm": 100, "t0": "T", "count_in_bars": 1, "through_recording": True}
)
STOP_METRONOME = Action("stop_metronome")
STOP = Action("stop_playback")
SAVE_TAKE = Action("save_take", {"take": "NEWTAKE"})
QUEUE_NEW = Action("queue_switch", {"composition": "NEW"})

COUNT_IN_STARTS = [led("rec", "blink"), METRONOME]
CANCEL = [STOP_METRONOME, led("rec", "off")]
TAKE_ENDS = [STOP_METRONOME, led("rec", "off"), SAVE_TAKE]
LOOP_STARTS = [play("OLD"), led("play", "on")]
LOOP_STOPS = [STOP, led("play", "off")]
BUSY = [led("busy", "on")]
REFUSED_RECORD = [log("record=refused reason=busy")]
REFUSED_GENERATE = [log("generate=refused reason=busy refused=1")]
STALE = [log("generation=stale genre=chorale seed=1")]
FAILED = [led("busy", "off"), log("generation=failed genre=chorale seed=1 error='model exploded'")]


# --------------------------------------------------------------------------- inputs
Input = Button | ControlChange | NoteOn | Tick | GenerationDone
INPUTS: dict[str, Input] = {}
for _name in ("genre", "record", "generate", "play", "tempo_down", "tempo_up"):
    for _kind in ("press", "long", "repeat"):
        INPUTS[f"{_name} {_kind}"] = Button(_name, _kind)
INPUTS |= {
    "cc play": ControlChange(105, 127),
    "cc stop": ControlChange(106, 127),
    "cc record": ControlChange(107, 127),
    "cc release": ControlChange(107, 0),  # the transport button let go
    "cc sustain": ControlChange(64, 127),  # not ours
    "note": NoteOn(72, 100),
    "tick": Tick(0.0),
    "done": GenerationDone("chorale", 1, "NEW"),
    "done error": GenerationDone("chorale", 1, None, error="model exploded"),
}


# --------------------------------------------------------------------------- the table
# state -> input -> (next state, actions). Tempo "long" and "repeat" step like a press.
def _tempo_rows(
    state: str,
    down: list[Action],
    up: list[Action],
    repeat_down: list[Action] | None = None,
    repeat_up: list[Action] | None = None,
) -> dict:
    return {
        "tempo_down press": (state, down),
        "tempo_down long": (state, down),
        "tempo_down repeat": (state, down if repeat_down is None else repeat_down),
        "tempo_up press": (state, up),
        "tempo_up long": (state, up),
        "tempo_up repeat": (state, up if repeat_up is None else repeat_up),
    }


TABLE: dict[str, dict[str, tuple[str, list[Action]]]] = {
    "idle": {
        "genre press": ("idle", [genre("jazz", 1)]),
        "genre long": ("idle", [genre("rock", 2)]),
        "genre repeat": ("idle", []),
        "record press": ("count_in", COUNT_IN_STARTS),
        "record long": ("count_in", COUNT_IN_STARTS),
        "record repeat": ("idle", []),
        "generate press": ("generating", BUSY + [gen("chorale", 1)]),
        "generate long": ("generating", BUSY + [gen("chorale", 1)]),
        "generate repeat": ("idle", []),
        "play press": ("playing", LOOP_STARTS),
        "play long": ("playing", LOOP_STARTS),
        "play repeat": ("idle", []),
        **_tempo_rows("idle", [tempo(99)], [tempo(101)]),
        "cc play": ("playing", LOOP_STARTS),
        "cc stop": ("idle", [STOP]),  # a panic button: releases stuck notes
        "cc record": ("count_in", COUNT_IN_STARTS),
        "cc release": ("idle", []),
        "cc sustain": ("idle", []),
        "note": ("idle", []),
        "tick": ("idle", []),
        "done": ("idle", STALE),
        "done error": ("idle", STALE),
    },
    "count_in": {
        "genre press": ("count_in", [genre("jazz", 1)]),
        "genre long": ("count_in", [genre("rock", 2)]),
        "genre repeat": ("count_in", []),
        "record press": ("idle", CANCEL),
        "record long": ("idle", CANCEL),
        "record repeat": ("count_in", []),
        "generate press": ("count_in", [log("generate=ignored reason=count_in")]),
        "generate long": ("count_in", [log("generate=ignored reason=count_in")]),
        "generate repeat": ("count_in", []),
        "play press": ("idle", CANCEL),
        "play long": ("idle", CANCEL),
        "play repeat": ("count_in", []),
        **_tempo_rows(
            "count_in",
            [log("tempo=ignored reason=count_in")],
            [log("tempo=ignored reason=count_in")],
            [],
            [],
        ),
        "cc play": ("idle", CANCEL),
        "cc stop": ("idle", CANCEL),
        "cc record": ("idle", CANCEL),
        "cc release": ("count_in", []),
        "cc sustain": ("count_in", []),
        "note": ("count_in", []),
        "tick": ("count_in", []),
        "done": ("count_in", STALE),
        "done error": ("count_in", STALE),
    },
    "recording": {
        "genre press": ("recording", [genre("jazz", 1)]),
        "genre long": ("recording", [genre("rock", 2)]),
        "genre repeat": ("recording", []),
        "record press": ("idle", TAKE_ENDS),
        "record long": ("idle", TAKE_ENDS),
        "record repeat": ("recording", []),
        "generate press": ("generating", TAKE_ENDS + BUSY + [gen("chorale", 1, "NEWTAKE")]),
        "generate long": ("generating", TAKE_ENDS + BUSY + [gen("chorale", 1, "NEWTAKE")]),
        "generate repeat": ("recording", []),
        "play press": ("idle", TAKE_ENDS),
        "play long": ("idle", TAKE_ENDS),
        "play repeat": ("recording", []),
        **_tempo_rows(
            "recording",
            [log("tempo=ignored reason=recording")],
            [log("tempo=ignored reason=recording")],
            [],
            [],
        ),
        "cc play": ("idle", TAKE_ENDS),
        "cc stop": ("idle", TAKE_ENDS),
        "cc record": ("idle", TAKE_ENDS),
        "cc release": ("recording", []),
        "cc sustain": ("recording", []),
        "note": ("recording", []),
        "tick": ("recording", []),
        "done": ("recording", STALE),
        "done error": ("recording", STALE),
    },
    "generating": {
        "genre press": ("generating", [genre("jazz", 1)]),
        "genre long": ("generating", [genre("rock", 2)]),
        "genre repeat": ("generating", []),
        "record press": ("generating", REFUSED_RECORD),
        "record long": ("generating", REFUSED_RECORD),
        "record repeat": ("generating", []),
        "generate press": ("generating", REFUSED_GENERATE),
        "generate long": ("generating", REFUSED_GENERATE),
        "generate repeat": ("generating", []),
        "play press": ("playing+generating", LOOP_STARTS),  # the old loop, until NEW arrives
        "play long": ("playing+generating", LOOP_STARTS),
        "play repeat": ("generating", []),
        **_tempo_rows("generating", [tempo(99)], [tempo(101)]),
        "cc play": ("playing+generating", LOOP_STARTS),
        "cc stop": ("generating", [STOP, log("autoplay=off reason=stop")]),
        "cc record": ("generating", REFUSED_RECORD),
        "cc release": ("generating", []),
        "cc sustain": ("generating", []),
        "note": ("generating", []),
        "tick": ("generating", []),
        "done": (
            "playing",
            [led("busy", "off"), play("NEW"), led("play", "on"), save("NEW", "chorale", 1)],
        ),
        "done error": ("idle", FAILED),
    },
    "playing": {
        "genre press": ("playing+generating", [genre("jazz", 1)] + BUSY + [gen("jazz", 1)]),
        "genre long": ("playing+generating", [genre("rock", 2)] + BUSY + [gen("rock", 1)]),
        "genre repeat": ("playing", []),
        "record press": ("count_in", LOOP_STOPS + COUNT_IN_STARTS),
        "record long": ("count_in", LOOP_STOPS + COUNT_IN_STARTS),
        "record repeat": ("playing", []),
        "generate press": ("playing+generating", BUSY + [gen("chorale", 1)]),
        "generate long": ("playing+generating", BUSY + [gen("chorale", 1)]),
        "generate repeat": ("playing", []),
        "play press": ("idle", LOOP_STOPS),
        "play long": ("idle", LOOP_STOPS),
        "play repeat": ("playing", []),
        **_tempo_rows("playing", [tempo(99)], [tempo(101)]),
        "cc play": ("playing", []),
        "cc stop": ("idle", LOOP_STOPS),
        "cc record": ("count_in", LOOP_STOPS + COUNT_IN_STARTS),
        "cc release": ("playing", []),
        "cc sustain": ("playing", []),
        "note": ("playing", []),
        "tick": ("playing", []),
        "done": ("playing", STALE),
        "done error": ("playing", STALE),
    },
    "playing+generating": {
        "genre press": ("playing+generating", [genre("jazz", 1)]),
        "genre long": ("playing+generating", [genre("rock", 2)]),
        "genre repeat": ("playing+generating", []),
        "record press": ("playing+generating", REFUSED_RECORD),
        "record long": ("playing+generating", REFUSED_RECORD),
        "record repeat": ("playing+generating", []),
        "generate press": ("playing+generating", REFUSED_GENERATE),
        "generate long": ("playing+generating", REFUSED_GENERATE),
        "generate repeat": ("playing+generating", []),
        "play press": ("generating", LOOP_STOPS),
        "play long": ("generating", LOOP_STOPS),
        "play repeat": ("playing+generating", []),
        **_tempo_rows("playing+generating", [tempo(99)], [tempo(101)]),
        "cc play": ("playing+generating", []),
        "cc stop": ("generating", LOOP_STOPS),
        "cc record": ("playing+generating", REFUSED_RECORD),
        "cc release": ("playing+generating", []),
        "cc sustain": ("playing+generating", []),
        "note": ("playing+generating", []),
        "tick": ("playing+generating", []),
        "done": ("playing", [led("busy", "off"), QUEUE_NEW, save("NEW", "chorale", 1)]),
        "done error": ("playing", FAILED),  # the old loop plays on
    },
}


# --------------------------------------------------------------------------- the fixtures
@dataclasses.dataclass
class World:
    box: Appliance
    take: Take
    old: Composition
    new: Composition
    t: float  # when the input under test happens


def world(state: str) -> World:
    """An appliance driven into ``state`` by real events, as a player would."""
    box = Appliance(GENRES, tempo_bpm=100)
    box.start()
    box.handle(Button("record", t=0.0))
    box.handle(Tick(BAR))
    box.handle(NoteOn(60, 90, BAR + 0.01))
    box.handle(NoteOff(60, BAR + 0.6))
    box.handle(Button("record", t=2 * BAR))
    take = box.take
    assert take is not None
    old = comp(60)
    box.handle(Button("generate", t=5.0))  # seed 0
    box.handle(GenerationDone("chorale", 0, old, t=5.1))  # plays
    assert (box.state, box.take, box.composition) == ("playing", take, old)
    t = 20.0
    if state == "idle":
        box.handle(Button("play", t=6.0))
    elif state == "generating":
        box.handle(Button("play", t=6.0))
        box.handle(Button("generate", t=7.0))  # seed 1
    elif state == "playing+generating":
        box.handle(Button("generate", t=7.0))  # seed 1
    elif state == "count_in":
        box.handle(Button("play", t=6.0))
        box.handle(Button("record", t=10.0))
        t = 11.0
    elif state == "recording":
        box.handle(Button("play", t=6.0))
        box.handle(Button("record", t=10.0))
        box.handle(Tick(10.0 + BAR))
        box.handle(NoteOn(64, 80, 10.0 + BAR))
        box.handle(NoteOff(64, 10.0 + BAR + 0.3))
        t = 13.0
    assert box.state == state
    return World(box, take, old, comp(67), t)


def normalize(actions: list[Action], w: World) -> list[Action]:
    """Put the table's names in place of the objects they stand for."""
    out = []
    for a in actions:
        args = {}
        for key, value in a.args.items():
            if value is w.take:
                value = "TAKE"
            elif isinstance(value, Take):
                value = "NEWTAKE"
            elif value is w.old:
                value = "OLD"
            elif value is w.new:
                value = "NEW"
            elif key == "t0" and value == w.t:
                value = "T"
            args[key] = value
        out.append(Action(a.name, args))
    return out


def feed(w: World, name: str) -> list[Action]:
    event = INPUTS[name]
    if isinstance(event, GenerationDone) and event.composition == "NEW":
        event = dataclasses.replace(event, composition=w.new)
    return w.box.handle(dataclasses.replace(event, t=w.t))


# ----------------------------------------------------------------- every input in every state
def test_the_table_covers_every_state_and_input():
    assert list(TABLE) == list(STATES)
    for state, rows in TABLE.items():
        assert sorted(rows) == sorted(INPUTS), state


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize("state", STATES)
def test_every_input_in_every_state(state, name):
    w = world(state)
    expected_state, expected_actions = TABLE[state][name]
    actions = feed(w, name)
    assert normalize(actions, w) == expected_actions
    assert w.box.state == expected_state


# --------------------------------------------------------------------------- scenarios
def names(actions: list[Action]) -> list[str]:
    return [a.name for a in actions]


def test_start_sets_every_output():
    box = Appliance(GENRES, tempo_bpm=90, default_genre="jazz")
    assert box.start() == [
        led("rec", "off"),
        led("busy", "off"),
        led("play", "off"),
        genre("jazz", 1),
        tempo(90),
    ]
    assert box.state == "idle"


def test_record_generate_play_change_genre_and_switch_at_the_loop_boundary():
    box = Appliance(GENRES, tempo_bpm=100)
    box.start()

    # RECORD: one bar of clicks at 100 BPM, REC blinking.
    assert box.handle(Button("record", t=0.0)) == [
        led("rec", "blink"),
        Action(
            "start_metronome",
            {"bpm": 100, "t0": 0.0, "count_in_bars": 1, "through_recording": True},
        ),
    ]
    assert box.recorder is not None
    assert box.recorder.record_t == pytest.approx(2.4)  # after four clicks of 0.6 s
    assert box.handle(Tick(1.9)) == [] and box.state == "count_in"
    assert box.handle(Tick(2.41)) == [led("rec", "on")] and box.state == "recording"

    # A sloppy four-note phrase over two bars: on the grid it is beats 1, 2, 3 and bar 2.
    for pitch, on, off in [(60, 2.43, 2.9), (62, 2.97, 3.5), (64, 3.62, 4.1), (65, 4.78, 5.9)]:
        assert box.handle(NoteOn(pitch, 90, on)) == []
        assert box.handle(NoteOff(pitch, off)) == []
    actions = box.handle(Button("record", t=2.4 + 2 * BAR + 0.2))  # a bit late
    assert actions == [STOP_METRONOME, led("rec", "off"), Action("save_take", {"take": box.take})]
    take = box.take
    assert take is not None
    assert take.n_steps == 32
    assert [(n.pitch, n.start, n.end) for n in take.notes] == [
        (60, 0, 3),
        (62, 4, 7),
        (64, 8, 11),
        (65, 16, 23),
    ]

    # GENRE picks jazz; GENERATE computes it (BUSY), then it plays by itself.
    assert box.handle(Button("genre", t=8.0)) == [genre("jazz", 1)]
    assert box.handle(Button("generate", t=8.5)) == [
        led("busy", "on"),
        Action("start_generation", {"genre": "jazz", "seed": 0, "take": take, "bpm": 100}),
    ]
    assert box.state == "generating"
    first = comp(60)
    assert box.handle(GenerationDone("jazz", 0, first, t=8.6)) == [
        led("busy", "off"),
        Action("start_playback", {"composition": first, "bpm": 100}),
        led("play", "on"),
        Action("save_composition", {"composition": first, "genre": "jazz", "seed": 0}),
    ]
    assert box.state == "playing"

    # Tempo follows live during playback.
    assert box.handle(Button("tempo_up", t=9.0)) == [tempo(101)]
    assert box.handle(Button("tempo_up", "repeat", t=9.15)) == [tempo(102)]

    # GENRE while playing: regenerate in rock; the jazz loop plays on meanwhile...
    assert box.handle(Button("genre", t=10.0)) == [
        genre("rock", 2),
        led("busy", "on"),
        Action("start_generation", {"genre": "rock", "seed": 1, "take": take, "bpm": 102}),
    ]
    assert box.state == "playing+generating"
    assert box.handle(Tick(11.0)) == []
    # ...and the rock one is queued to take over at the next loop boundary.
    second = comp(67)
    assert box.handle(GenerationDone("rock", 1, second, t=11.1)) == [
        led("busy", "off"),
        Action("queue_switch", {"composition": second}),
        Action("save_composition", {"composition": second, "genre": "rock", "seed": 1}),
    ]
    assert box.state == "playing" and box.composition is second

    # GENERATE again: a new variation, a new seed.
    assert names(box.handle(Button("generate", t=12.0))) == ["set_led", "start_generation"]
    assert box.generating == ("rock", 2)

    # PLAY/STOP stops the loop; the running generation will not start it again.
    assert box.handle(Button("play", t=13.0)) == LOOP_STOPS
    third = comp(72)
    assert box.handle(GenerationDone("rock", 2, third)) == [
        led("busy", "off"),
        Action("save_composition", {"composition": third, "genre": "rock", "seed": 2}),
    ]
    assert box.state == "idle" and box.composition is third
    assert box.handle(Button("play", t=14.0)) == [
        Action("start_playback", {"composition": third, "bpm": 102}),
        led("play", "on"),
    ]


def test_recording_stops_by_itself_after_max_bars():
    box = Appliance(GENRES, tempo_bpm=100, max_bars=8)
    box.handle(Button("record", t=0.0))
    box.handle(Tick(2.4))
    box.handle(NoteOn(60, 90, 2.4))  # held to the very end
    end = 2.4 + 8 * BAR
    assert box.handle(Tick(end - 0.01)) == [] and box.state == "recording"
    actions = box.handle(Tick(end + 0.004))  # the first tick past the last bar line
    assert names(actions) == ["stop_metronome", "set_led", "save_take"]
    assert box.state == "idle"
    assert box.take is not None
    assert box.take.n_steps == 8 * 16
    assert box.take.notes == [Note(60, 0, 128, 90)]  # ended at the bar line, not at the tick
    assert box.handle(NoteOn(62, 90, end + 0.1)) == []


def test_one_late_tick_can_cross_the_count_in_and_the_end():
    box = Appliance(GENRES, tempo_bpm=100, max_bars=1)
    box.handle(Button("record", t=0.0))
    assert box.handle(NoteOn(60, 90, 2.35)) == []  # just before bar 0: it counts as step 0
    assert box.handle(Tick(10.0)) == [
        led("rec", "on"),
        STOP_METRONOME,
        led("rec", "off"),
        Action("save_take", {"take": box.take}),
    ]
    assert box.take is not None
    assert box.take.notes == [Note(60, 0, 16, 90)]


def test_any_timed_event_moves_the_clock():
    box = Appliance(GENRES, tempo_bpm=100)
    box.handle(Button("record", t=0.0))
    assert box.handle(NoteOn(60, 90, 2.5)) == [led("rec", "on")]  # no Tick in between
    assert box.state == "recording"
    assert names(box.handle(Button("record", t=3.0))) == ["stop_metronome", "set_led", "save_take"]
    assert box.take is not None
    assert box.take.notes == [Note(60, 1, 4, 90)]


def test_an_unstamped_press_happens_now_not_in_the_past():
    box = Appliance(GENRES, tempo_bpm=100)
    box.handle(Tick(1000.0))
    actions = box.handle(Button("record"))  # t=0.0, e.g. from the control socket
    assert actions[-1].args["t0"] == 1000.0
    assert box.recorder is not None
    assert box.recorder.record_t == pytest.approx(1002.4)
    box.handle(Tick(1002.4))
    box.handle(NoteOn(60, 90, 1002.4))
    assert names(box.handle(Button("record"))) == ["stop_metronome", "set_led", "save_take"]
    assert box.take is not None
    assert box.take.notes == [Note(60, 0, 1, 90)]  # ended "now" (held), not before bar 0


def test_an_empty_take_keeps_the_previous_one():
    w = world("idle")
    w.box.handle(Button("record", t=30.0))
    w.box.handle(Tick(32.5))
    actions = w.box.handle(Button("record", t=33.0))
    assert actions == CANCEL + [log("take=empty kept=previous")]
    assert w.box.take is w.take
    fresh = Appliance(GENRES)
    fresh.handle(Button("record", t=0.0))
    assert fresh.handle(Button("record", t=3.0))[-1] == log("take=empty kept=none")
    assert fresh.take is None


def test_a_take_with_stray_notes_says_so():
    box = Appliance(GENRES, tempo_bpm=100)
    box.handle(Button("record", t=0.0))
    box.handle(NoteOn(55, 90, 1.0))  # in the count-in
    box.handle(Tick(2.4))
    box.handle(NoteOff(50, 2.5))  # never struck
    box.handle(NoteOff(55, 2.6))
    box.handle(NoteOn(60, 90, 2.7))
    actions = box.handle(Button("record", t=4.0))  # 60 still held: ends here
    assert actions[-1] == log("take=recorded notes=1 dropped=1 orphan_offs=1")
    assert box.take is not None
    assert box.take.notes == [Note(60, 2, 11, 90)]


def test_generation_failure_while_idle_goes_back_to_idle():
    box = Appliance(GENRES)
    box.handle(Button("record", t=0.0))
    box.handle(NoteOn(60, 90, 2.5))
    box.handle(Button("record", t=3.0))
    box.handle(Button("generate", t=4.0))
    assert box.handle(GenerationDone("chorale", 0, None, error="bad model")) == [
        led("busy", "off"),
        log("generation=failed genre=chorale seed=0 error='bad model'"),
    ]
    assert box.state == "idle" and box.composition is None
    # Nothing to play: PLAY/STOP still stops, releasing any stuck note.
    assert box.handle(Button("play", t=5.0)) == [log("play=ignored reason=nothing_to_play"), STOP]
    # It may be tried again, with the next seed.
    assert box.handle(Button("generate", t=6.0))[1].args["seed"] == 1


def test_generation_failure_while_playing_keeps_the_old_loop():
    w = world("playing+generating")
    actions = w.box.handle(GenerationDone("chorale", 1, None, error="out of memory"))
    assert names(actions) == ["set_led", "log"]  # no stop, no switch
    assert w.box.state == "playing" and w.box.composition is w.old


def test_a_result_without_a_composition_is_a_failure():
    w = world("generating")
    assert w.box.handle(GenerationDone("chorale", 1, None))[-1] == log(
        "generation=failed genre=chorale seed=1 error='no composition'"
    )
    assert w.box.state == "idle"


def test_generate_while_generating_is_refused_and_counted():
    w = world("generating")
    box = w.box
    for n in range(1, 5):
        assert box.handle(Button("generate", t=21.0 + n)) == [
            log(f"generate=refused reason=busy refused={n}")
        ]
    assert box.generating == ("chorale", 1) and box.refused_generates == 4
    box.handle(GenerationDone("chorale", 1, w.new))
    assert names(box.handle(Button("generate", t=30.0))) == ["set_led", "start_generation"]
    assert box.generating == ("chorale", 2)
    assert box.status()["refused_generates"] == 4


def test_generate_without_a_take_only_logs():
    box = Appliance(GENRES)
    assert box.handle(Button("generate", t=1.0)) == [log("generate=ignored reason=no_take")]
    assert box.state == "idle" and box.next_seed == 0


def test_without_any_genre_installed():
    box = Appliance([])
    assert box.start()[3] == genre("", None)
    assert box.handle(Button("genre", t=0.5)) == [log("genre=ignored reason=no_genre_installed")]
    box.handle(Button("record", t=1.0))
    box.handle(NoteOn(60, 90, 3.5))
    box.handle(Button("record", t=4.0))
    assert box.handle(Button("generate", t=5.0)) == [
        log("generate=ignored reason=no_genre_installed")
    ]
    assert box.state == "idle"


def test_one_genre_installed_genre_does_nothing():
    box = Appliance(["chorale"])
    assert box.handle(Button("genre")) == [] and box.genre == "chorale"


def test_genre_changed_during_a_generation_regenerates_in_the_shown_genre():
    w = world("generating")
    box = w.box
    box.handle(Button("genre", t=21.0))  # jazz
    box.handle(Button("genre", t=21.1))  # rock: what the LEDs show now
    assert box.handle(GenerationDone("chorale", 1, w.new)) == [
        log("generation=discarded genre=chorale seed=1 reason=genre_changed"),
        Action("start_generation", {"genre": "rock", "seed": 2, "take": w.take, "bpm": 100}),
    ]
    assert box.state == "generating" and box.composition is w.old  # BUSY stays on
    rock = comp(50)
    assert names(box.handle(GenerationDone("rock", 2, rock))) == [
        "set_led",
        "start_playback",
        "set_led",
        "save_composition",
    ]
    assert box.state == "playing" and box.composition is rock


def test_genre_cycled_back_during_a_generation_keeps_the_result():
    w = world("playing+generating")
    w.box.handle(Button("genre", t=21.0))  # jazz
    w.box.handle(Button("genre", "long", t=21.1))  # back to chorale
    assert names(w.box.handle(GenerationDone("chorale", 1, w.new))) == [
        "set_led",
        "queue_switch",
        "save_composition",
    ]


def test_rapid_genre_presses_while_playing_end_in_the_last_genre():
    w = world("playing")
    box = w.box
    starts = []
    for i in range(5):  # jazz rock chorale jazz rock
        starts += [
            a for a in box.handle(Button("genre", t=21.0 + i / 20)) if a.name == "start_generation"
        ]
    assert [a.args["genre"] for a in starts] == ["jazz"]  # one at a time
    assert box.genre == "rock"
    again = box.handle(GenerationDone("jazz", 1, w.new))
    assert [a.args["genre"] for a in again if a.name == "start_generation"] == ["rock"]
    rock = comp(40)
    assert names(box.handle(GenerationDone("rock", 2, rock))) == [
        "set_led",
        "queue_switch",
        "save_composition",
    ]
    assert box.state == "playing"


def test_stop_during_a_generation_means_it_will_not_start_by_itself():
    w = world("playing+generating")
    w.box.handle(Button("play", t=21.0))
    assert w.box.state == "generating"
    assert names(w.box.handle(GenerationDone("chorale", 1, w.new))) == [
        "set_led",
        "save_composition",
    ]
    assert w.box.state == "idle" and w.box.composition is w.new
    assert w.box.handle(Button("play", t=22.0)) == [
        Action("start_playback", {"composition": w.new, "bpm": 100}),
        led("play", "on"),
    ]


def test_play_while_the_first_generation_runs_waits_for_it():
    box = Appliance(GENRES)
    box.handle(Button("record", t=0.0))
    box.handle(NoteOn(60, 90, 2.5))
    box.handle(Button("record", t=3.0))
    box.handle(Button("generate", t=4.0))
    box.handle(ControlChange(106, 127, t=4.1))  # the keyboard's STOP: no autoplay
    assert box.autoplay is False
    assert box.handle(Button("play", t=4.2)) == [log("play=waiting reason=generating")]
    assert box.autoplay is True
    first = comp(60)
    assert names(box.handle(GenerationDone("chorale", 0, first))) == [
        "set_led",
        "start_playback",
        "set_led",
        "save_composition",
    ]


def test_stale_and_duplicate_results_are_ignored():
    w = world("generating")
    assert w.box.handle(GenerationDone("chorale", 0, w.new)) == [
        log("generation=stale genre=chorale seed=0")
    ]
    assert w.box.state == "generating"
    w.box.handle(GenerationDone("chorale", 1, w.new))
    assert w.box.handle(GenerationDone("chorale", 1, w.new)) == STALE
    assert w.box.state == "playing"


@pytest.mark.parametrize(
    "start, button, presses, bpm, emitted",
    [
        (100, "tempo_up", 3, 103, 3),
        (100, "tempo_down", 3, 97, 3),
        (238, "tempo_up", 5, 240, 2),  # clamped: nothing is sent past the limit
        (41, "tempo_down", 5, 40, 1),
        (300, "tempo_up", 1, 240, 0),  # a start value out of range is clamped too
    ],
)
def test_tempo_steps_one_bpm_and_clamps(start, button, presses, bpm, emitted):
    box = Appliance(GENRES, tempo_bpm=start)
    actions = [a for i in range(presses) for a in box.handle(Button(button, "repeat", t=i))]
    assert box.tempo_bpm == bpm
    assert len(actions) == emitted and all(a.name == "set_tempo" for a in actions)


def test_a_take_is_recorded_at_the_tempo_set():
    box = Appliance(GENRES, tempo_bpm=100)
    box.handle(Button("tempo_up"))
    box.handle(Button("record", t=0.0))
    assert box.recorder is not None
    assert box.recorder.tempo_bpm == 101


def test_rapid_record_presses_toggle_cleanly():
    box = Appliance(GENRES)
    states = []
    for i in range(5):
        box.handle(Button("record", t=i * 0.05))
        states.append(box.state)
    assert states == ["count_in", "idle", "count_in", "idle", "count_in"]


def test_rapid_play_presses_toggle_cleanly():
    w = world("idle")
    states = []
    for i in range(4):
        w.box.handle(Button("play", t=21.0 + i * 0.05))
        states.append(w.box.state)
    assert states == ["playing", "idle", "playing", "idle"]


def test_no_count_in():
    box = Appliance(GENRES, count_in_bars=0, metronome=False)
    assert box.handle(Button("record", t=5.0)) == [
        led("rec", "on"),
        Action(
            "start_metronome",
            {"bpm": 100, "t0": 5.0, "count_in_bars": 0, "through_recording": False},
        ),
    ]
    assert box.state == "recording"
    box.handle(NoteOn(60, 90, 5.0))
    box.handle(Button("record", t=6.0))
    assert box.take is not None
    assert box.take.notes == [Note(60, 0, 7, 90)]


def test_rhythm_assist_setting_reaches_the_take():
    box = Appliance(GENRES, rhythm_assist=False)
    box.handle(Button("record", t=0.0))
    box.handle(NoteOn(60, 90, 2.5))
    box.handle(Button("record", t=3.0))
    assert box.take is not None
    assert box.take.rhythm_assist is False
    box.rhythm_assist = True  # switched at run time: the next take
    box.handle(Button("record", t=10.0))
    box.handle(NoteOn(60, 90, 12.5))
    box.handle(Button("record", t=13.0))
    assert box.take.rhythm_assist is True


def test_from_config():
    config = Config(
        player=PlayerConfig(
            tempo_bpm=120,
            rhythm_assist=False,
            metronome=False,
            max_bars=4,
            count_in_bars=2,
            default_genre="rock",
        ),
        keyboard=KeyboardConfig(cc_play=20, cc_stop=21, cc_record=22),
    )
    box = Appliance.from_config(config, GENRES, first_seed=7)
    assert (box.tempo_bpm, box.genre, box.rhythm_assist, box.next_seed) == (120, "rock", False, 7)
    actions = box.handle(ControlChange(22, 127, t=0.0))
    assert actions[-1].args == {
        "bpm": 120,
        "t0": 0.0,
        "count_in_bars": 2,
        "through_recording": False,
    }
    assert box.recorder is not None
    assert box.recorder.max_bars == 4 and box.recorder.record_t == pytest.approx(4.0)
    assert box.handle(ControlChange(107, 127, t=0.1)) == []  # the default CC is not ours now
    assert box.handle(ControlChange(21, 100, t=0.2)) == CANCEL


def test_a_default_genre_that_is_not_installed_falls_back_to_the_first():
    assert Appliance(GENRES, default_genre="polka").genre == "chorale"
    assert Appliance(GENRES).genre == "chorale"


def test_set_genres_after_a_deploy():
    box = Appliance(GENRES, default_genre="jazz")
    assert box.set_genres(["blues", "jazz"]) == [genre("jazz", 1)]
    assert box.set_genres(["blues", "funk"]) == [genre("blues", 0)]
    assert box.set_genres([]) == [genre("", None)]


def test_unknown_buttons_and_kinds_only_log():
    box = Appliance(GENRES)
    assert box.handle(Button("shift")) == [log("button=shift result=ignored reason=unknown_button")]
    assert box.handle(Button("play", "double")) == [
        log("button=play kind=double result=ignored reason=unknown_kind")
    ]
    assert box.handle("not an event") == []
    assert box.state == "idle"


def test_status():
    w = world("playing+generating")
    assert w.box.status() == {
        "state": "playing+generating",
        "genre": "chorale",
        "genres": GENRES,
        "tempo_bpm": 100,
        "rhythm_assist": True,
        "take_bars": 1,
        "take_notes": 1,
        "recording_notes": None,
        "has_composition": True,
        "generating": ["chorale", 1],
        "next_seed": 2,
        "refused_generates": 0,
    }


# --------------------------------------------------------------------------- random presses
def test_random_presses_keep_the_outputs_consistent():
    """Thousands of random inputs with a simulated worker: the LEDs, the player and the
    metronome always agree with the state, and there is never a second generation."""
    inputs = [name for name in INPUTS if not name.startswith("done")]
    for run in range(60):
        rng = random.Random(run)
        box = Appliance(GENRES, max_bars=2)
        leds = {"rec": None, "busy": None, "play": None}
        playing = clicking = False
        job = None  # the simulated worker's one job: (genre, seed, ready at)
        t = 0.0
        for a in box.start():
            if a.name == "set_led":
                leds[a.args["led"]] = a.args["state"]
        for _ in range(300):
            t += rng.choice([0.01, 0.05, 0.2, 0.7, 2.0])
            if job and t >= job[2]:
                ok = rng.random() > 0.2
                event: Input = GenerationDone(
                    job[0], job[1], comp(60) if ok else None, "" if ok else "boom", t
                )
                job = None
            elif rng.random() < 0.3:
                event = Tick(t)
            else:
                event = dataclasses.replace(INPUTS[rng.choice(inputs)], t=t)
            for a in box.handle(event):
                assert a.name in ACTIONS and set(a.args) == set(ACTIONS[a.name])
                if a.name == "set_led":
                    leds[a.args["led"]] = a.args["state"]
                elif a.name == "start_generation":
                    assert job is None, "a second generation while one runs"
                    job = (a.args["genre"], a.args["seed"], t + rng.choice([0.05, 0.5, 3.0]))
                elif a.name in ("start_playback", "queue_switch"):
                    assert a.args["composition"] is not None
                    playing = playing or a.name == "start_playback"
                elif a.name == "stop_playback":
                    playing = False
                elif a.name == "start_metronome":
                    clicking = True
                elif a.name == "stop_metronome":
                    clicking = False
            state = box.state
            assert state in STATES
            assert leds["rec"] == {"count_in": "blink", "recording": "on"}.get(state, "off")
            assert leds["busy"] == ("on" if state.endswith("generating") else "off")
            assert leds["play"] == ("on" if state.startswith("playing") else "off")
            assert playing == state.startswith("playing")
            assert clicking == (state in ("count_in", "recording"))
            assert (job is not None) == (box.generating is not None)
            assert 40 <= box.tempo_bpm <= 240


def test_status_counts_the_notes_of_a_take_while_it_is_recorded():
    box = Appliance(GENRES, tempo_bpm=100)
    assert box.status()["recording_notes"] is None
    box.handle(Button("record", t=0.0))
    assert box.status()["recording_notes"] == 0  # counting in
    box.handle(NoteOn(60, 90, 2.5))
    assert box.status()["recording_notes"] == 1  # held: it counts from its key press
    box.handle(NoteOff(60, 2.8))
    box.handle(NoteOn(62, 90, 3.0))
    assert box.status()["recording_notes"] == 2
    assert box.status()["take_notes"] == 0  # no take yet: it is still being played
    box.handle(Button("record", t=3.5))
    assert box.status()["recording_notes"] is None and box.status()["take_notes"] == 2
