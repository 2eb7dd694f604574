"""The front panel on gpiozero's MockFactory, driven by a fake clock.

Mock pins run gpiozero's edge callbacks at once and ignore bounce_time, so these
tests exercise our own debouncing and hold timing, millisecond by millisecond.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable

import pytest
from gpiozero import LED, DigitalInputDevice, GPIOPinInUse
from gpiozero.pins.mock import MockFactory

from deepkeys.device.adapters.panel import (
    BUTTON_PINS,
    COUNT_STEP_S,
    LED_PINS,
    Panel,
    count_pattern,
    genre_slot,
)
from deepkeys.device.errors import UserError
from deepkeys.device.events import Button


class Rig:
    """A panel with no thread; ``run_to(ms)`` polls every millisecond up to ``ms``."""

    def __init__(self, **kwargs) -> None:
        # Timings of its own, so the timelines below do not move with the config's defaults.
        kwargs = {"long_press_ms": 800, "repeat_ms": 120} | kwargs
        self.factory = MockFactory()
        self.now_ms = 0
        self.events: queue.Queue = queue.Queue()
        self.panel = Panel(
            self.events,
            pin_factory=self.factory,
            thread=False,
            clock=self.clock,
            genre_leds=(12, 16),
            **kwargs,
        )

    def clock(self) -> float:
        return 100.0 + self.now_ms / 1000  # anything monotonic; not starting at 0

    def pin(self, name: str):
        return self.factory.pin(BUTTON_PINS[name])

    def down(self, *names: str) -> None:
        for name in names:
            self.pin(name).drive_low()  # buttons pull up; pressed connects to ground

    def up(self, *names: str) -> None:
        for name in names:
            self.pin(name).drive_high()

    def run_to(self, ms: int) -> list[tuple[str, str, int]]:
        """Poll at every millisecond until ``ms``; events as (name, kind, ms)."""
        out = []
        while self.now_ms < ms:
            self.now_ms += 1
            for ev in self.panel.poll():
                out.append((ev.name, ev.kind, round((ev.t - 100.0) * 1000)))
        queued = []
        while not self.events.empty():
            queued.append(self.events.get_nowait())
        assert [(e.name, e.kind) for e in queued] == [(n, k) for n, k, _ in out]
        return out

    def bounce(self, name: str, *toggles_ms: int) -> None:
        """Toggle the pin at the given times, starting with a press."""
        level = True
        for ms in toggles_ms:
            assert self.run_to(ms) == []
            (self.down if level else self.up)(name)
            level = not level


@pytest.fixture
def rig():
    rig = Rig()
    yield rig
    rig.panel.close()
    rig.factory.close()


def test_bouncing_press_and_release_yield_one_press(rig: Rig) -> None:
    # Contact bounce on the way down: low, high, low, high, low (settles at 12 ms).
    rig.bounce("genre", 10, 13, 16, 19, 22)
    assert rig.run_to(41) == []
    assert rig.panel.pressed["genre"] is False  # 19 ms stable: not yet
    assert rig.run_to(42) == []
    assert rig.panel.pressed["genre"] is True  # 20 ms stable: down (no event until release)
    # And on the way up: high, low, high (settles at 206 ms).
    rig.bounce("genre", 200)
    rig.run_to(203)
    rig.down("genre")
    rig.run_to(206)
    rig.up("genre")
    assert rig.run_to(500) == [("genre", "press", 226)]


def test_glitch_shorter_than_debounce_is_ignored(rig: Rig) -> None:
    rig.run_to(10)
    rig.down("play")
    rig.run_to(25)
    rig.up("play")  # 15 ms low: noise, not a press
    assert rig.run_to(2000) == []
    assert rig.panel.pressed["play"] is False


def test_short_press_vs_long_press(rig: Rig) -> None:
    rig.down("record")
    rig.run_to(150)
    rig.up("record")
    assert rig.run_to(300) == [("record", "press", 170)]

    rig.down("generate")  # held from 300 ms: long at 300 + 800
    assert rig.run_to(1099) == []
    assert rig.run_to(1100) == [("generate", "long", 1100)]
    assert rig.run_to(3000) == []  # once only, however long it is held
    rig.up("generate")
    assert rig.run_to(3500) == []  # and no press on release


def test_tempo_repeats_while_held(rig: Rig) -> None:
    rig.down("tempo_up")
    events = rig.run_to(1000)
    rig.up("tempo_up")
    assert rig.run_to(1500) == []
    # First repeat after 400 ms, then every 120 ms; nothing on release.
    assert events == [("tempo_up", "repeat", ms) for ms in (400, 520, 640, 760, 880, 1000)]
    # A short tap is a plain press.
    rig.down("tempo_down")
    rig.run_to(1600)
    rig.up("tempo_down")
    assert rig.run_to(1700) == [("tempo_down", "press", 1620)]


def test_stalled_poll_gets_one_repeat_not_a_volley(rig: Rig) -> None:
    rig.down("tempo_down")
    rig.run_to(400)
    rig.now_ms = 999  # the loop stalled for 600 ms
    assert rig.run_to(1000) == [("tempo_down", "repeat", 1000)]
    assert rig.run_to(1119) == []
    assert rig.run_to(1120) == [("tempo_down", "repeat", 1120)]


def test_two_buttons_together_give_two_presses(rig: Rig) -> None:
    rig.down("genre", "record")
    rig.run_to(100)
    rig.up("genre", "record")
    events = rig.run_to(200)
    assert sorted(events) == [("genre", "press", 120), ("record", "press", 120)]


def test_button_held_at_start_stays_silent_until_pressed_again() -> None:
    factory = MockFactory()
    factory.pin(BUTTON_PINS["play"]).drive_low()  # stuck down before the panel starts
    q: queue.Queue = queue.Queue()
    t = [0.0]
    with Panel(q, pin_factory=factory, thread=False, clock=lambda: t[0]) as panel:
        for ms in range(0, 3000, 5):
            t[0] = ms / 1000
            assert panel.poll() == []
        factory.pin(BUTTON_PINS["play"]).drive_high()
        for ms in range(3000, 3100, 5):
            t[0] = ms / 1000
            assert panel.poll() == []
    factory.close()


def test_leds_on_off_blink_and_genre(rig: Rig) -> None:
    panel = rig.panel
    assert panel.leds == {
        "rec": "off",
        "busy": "off",
        "play": "off",
        "genre0": "off",
        "genre1": "off",
    }
    panel.set_led("rec", "on")
    assert rig.factory.pin(LED_PINS["rec"]).state is True
    panel.set_led("rec", "off")
    assert rig.factory.pin(LED_PINS["rec"]).state is False
    panel.set_genre(1)
    assert panel.leds["genre1"] == "on" and panel.leds["genre0"] == "off"
    assert rig.factory.pin(16).state is True and rig.factory.pin(12).state is False

    busy = rig.factory.pin(LED_PINS["busy"])
    busy.clear_states()
    panel.set_led("busy", "blink", on_time=0.01, off_time=0.01)
    assert panel.leds["busy"] == "blink"
    wait_for(lambda: len(busy.states) >= 6)  # gpiozero's blink thread toggles the pin
    levels = [s.state for s in busy.states]
    assert True in levels and False in levels
    panel.set_led("busy", "on")  # stops the blink
    assert panel.leds["busy"] == "on" and busy.state is True
    with pytest.raises(ValueError, match="unknown LED"):
        panel.set_led("disco", "on")
    with pytest.raises(ValueError, match="LED mode"):
        panel.set_led("rec", "dim")


def test_close_releases_pins() -> None:
    factory = MockFactory()
    panel = Panel(queue.Queue(), pin_factory=factory, thread=False)
    with pytest.raises(GPIOPinInUse):
        DigitalInputDevice(BUTTON_PINS["genre"], pin_factory=factory)  # in use while open
    panel.set_led("play", "blink", on_time=0.01, off_time=0.01)
    panel.close()
    panel.close()  # twice is fine
    for pin in BUTTON_PINS.values():
        DigitalInputDevice(pin, pin_factory=factory).close()
    for pin in LED_PINS.values():
        LED(pin, pin_factory=factory).close()
    factory.close()


def test_panel_thread_turns_a_real_time_press_into_an_event() -> None:
    q: queue.Queue = queue.Queue()
    with Panel(q, pin_factory="mock", poll_ms=1) as panel:
        pin = panel.pin_factory.pin(BUTTON_PINS["generate"])
        pin.drive_low()
        wait_for(lambda: panel.pressed["generate"])
        pin.drive_high()
        event = q.get(timeout=2)
    assert isinstance(event, Button) and (event.name, event.kind) == ("generate", "press")


def test_config_errors_are_user_errors() -> None:
    with pytest.raises(UserError, match="GPIO 17 is configured twice: genre and rec"):
        Panel(queue.Queue(), buttons={"genre": 17}, pin_factory="mock", thread=False)
    with pytest.raises(UserError, match="unknown GPIO pin factory 'gpio9000'"):
        Panel(queue.Queue(), pin_factory="gpio9000", thread=False)
    with pytest.raises(UserError, match="unknown panel button"):
        Panel(queue.Queue(), buttons={"volume": 4}, pin_factory="mock", thread=False)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.005)


def _rising_edges(pin) -> list[float]:
    """When the pin went high since its history was cleared (a mock pin keeps each change
    with the time since the one before)."""
    times = list(itertools.accumulate(s.timestamp for s in pin.states))
    states = pin.states
    return [times[i] for i in range(1, len(states)) if states[i].state and not states[i - 1].state]


def test_genres_past_the_slot_leds_blink_their_slot_a_count() -> None:
    # Two slot LEDs, five genres: 0, 1 steady; 2, 3 blink slot 0, 1 once; 4 blinks slot 0 twice.
    factory = MockFactory()
    panel = Panel(queue.Queue(), pin_factory=factory, thread=False, genre_leds=(12, 16))
    try:
        panel.set_genre(1)
        assert (panel.leds["genre0"], panel.leds["genre1"]) == ("off", "on")
        for index, slot, count in ((2, 0, 1), (3, 1, 1), (4, 0, 2)):
            panel.set_genre(index)
            lit, dark = (12, 16) if slot == 0 else (16, 12)
            assert panel.leds[f"genre{slot}"] == "blink"
            assert panel.leds[f"genre{1 - slot}"] == "off"
            period = len(count_pattern(count)) * COUNT_STEP_S
            factory.pin(lit).clear_states()
            time.sleep(2 * period + 0.1)
            edges = _rising_edges(factory.pin(lit))
            # ``count`` flashes in each period, then a rest longer than the gap between flashes
            assert 2 * count <= len(edges) <= 3 * count, (index, edges)
            gaps = [round((b - a) / COUNT_STEP_S) for a, b in itertools.pairwise(edges)]
            assert set(gaps) == ({2, 5} if count > 1 else {5}), (index, gaps)
            assert factory.pin(dark).state is False
        panel.set_genre(0)  # back to a steady slot: the pattern stops
        time.sleep(3 * COUNT_STEP_S)
        assert panel.leds["genre0"] == "on" and factory.pin(12).state is True
        factory.pin(12).clear_states()
        time.sleep(3 * COUNT_STEP_S)
        assert [s.state for s in factory.pin(12).states] in ([True], [])
    finally:
        panel.close()
        factory.close()


def test_genre_slot_and_count_pattern() -> None:
    assert [genre_slot(i, 8) for i in (0, 7, 8, 15, 16)] == [(0, 0), (7, 0), (0, 1), (7, 1), (0, 2)]
    assert count_pattern(1)[:2] == (1, 0) and sum(count_pattern(3)) == 3
    assert count_pattern(2) == (1, 0, 1, 0, 0, 0, 0)
