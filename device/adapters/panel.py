"""The front panel: six buttons in as ``Button`` events, three (or more) LEDs out.

Pins are BCM numbers on any gpiozero pin factory, chosen by name: ``"mock"``
(gpiozero's ``MockFactory``, for ``deepkeys sim`` and tests), ``"lgpio"``,
``"rpigpio"``, ``"pigpio"``, ``"native"``, or ``None`` for gpiozero's default on
a Pi (lgpio first).

Debouncing and hold detection are ours, not gpiozero's: mock pins ignore
``bounce_time``, and doing it here makes the timing testable with an injected
clock. gpiozero's edge callbacks only record the raw level and its time;
``poll(now)``, called every few milliseconds by the panel's own thread, turns
stable levels into events:

- a level counts once it has been stable for ``debounce_ms`` (default 20 ms;
  Zynthian uses 1 ms, but worn mechanical switches bounce for longer);
- a short press fires ``Button(name, "press")`` on release;
- held past ``long_press_ms``, it fires ``Button(name, "long")`` once and nothing on
  release;
- the tempo buttons instead fire ``Button(name, "repeat")`` after
  ``repeat_delay_ms`` and then every ``repeat_ms`` while held.

The genre slot LEDs (at most 8) show more genres than they number: genre ``i`` is
shown on slot ``i % slots``, lit steadily for the first ``slots`` genres, and for
the ``k``-th round past them blinking ``k`` times, then resting (:func:`genre_slot`,
:func:`count_pattern`): with 8 slots the 9th genre blinks slot 1 once, the 17th
twice.

    >>> import queue
    >>> q = queue.Queue()
    >>> panel = Panel(q, pin_factory="mock", thread=False, clock=lambda: 0.0)
    >>> panel.set_led("rec", "on"); panel.leds["rec"]
    'on'
    >>> panel.close()
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import entry_points
from typing import Any

from deepkeys.device.config import ButtonPins, Config, LedPins, PanelConfig
from deepkeys.device.errors import UserError
from deepkeys.device.events import BUTTONS, Button
from deepkeys.device.log import kv
from deepkeys.device.worker import Worker

log = logging.getLogger(__name__)

#: The config's defaults (DESIGN.md's), BCM numbering. Buttons connect the pin to ground.
BUTTON_PINS: dict[str, int] = dataclasses.asdict(ButtonPins())
LED_PINS: dict[str, int] = dataclasses.asdict(LedPins())
_DEFAULTS = PanelConfig()
REPEAT_BUTTONS = ("tempo_down", "tempo_up")
LED_MODES = ("on", "off", "blink")
_EPS = 1e-6  # timing slack, so 100.042 - 100.022 counts as the 20 ms it is
COUNT_STEP_S = 0.2  # a genre slot's count blink: 0.2 s on, 0.2 s off, ..., then a rest


def genre_slot(index: int, slots: int) -> tuple[int, int]:
    """Which slot LED shows genre ``index``, and how many times it blinks: 0 is steady.

    >>> genre_slot(2, 8), genre_slot(8, 8), genre_slot(17, 8)
    ((2, 0), (0, 1), (1, 2))
    """
    return index % slots, index // slots


def count_pattern(count: int) -> tuple[int, ...]:
    """One period of a slot LED blinking ``count`` times, as levels :data:`COUNT_STEP_S`
    apart: the flashes, then a rest of three steps more, so counts stay apart.

    >>> count_pattern(1), count_pattern(2)
    ((1, 0, 0, 0, 0), (1, 0, 1, 0, 0, 0, 0))
    """
    return (1, 0) * count + (0, 0, 0)


def make_pin_factory(name: str | None) -> Any:
    """A gpiozero pin factory by its entry-point name; ``None`` means gpiozero's default.

    >>> type(make_pin_factory("mock")).__name__
    'MockFactory'
    """
    if name is None or name == "default":
        return None
    with warnings.catch_warnings():
        group = entry_points(group="gpiozero_pin_factories")
    for ep in group:
        if ep.name == name.lower():
            try:
                return ep.load()()
            except Exception as exc:
                raise UserError(
                    f"GPIO pin factory {name!r} unavailable: {exc}"
                    " (use pin factory 'mock' off the Pi)"
                ) from exc
    names = ", ".join(sorted(ep.name for ep in group))
    raise UserError(f"unknown GPIO pin factory {name!r} (choose from {names})")


@dataclass
class _Key:
    """One button's debounce and hold state. Times are the panel clock's seconds."""

    name: str
    device: Any
    repeats: bool
    raw: bool = False  # the last level seen, bounces and all
    raw_at: float = 0.0  # when it last changed
    stable: bool = False  # the debounced level
    down_at: float = 0.0  # when the current press began
    held: bool = False  # "long" or "repeat" fired: no "press" on release
    next_repeat: float = 0.0


class Panel(Worker):
    """The front panel; see the module docstring.

    ``buttons`` and ``leds`` map names to BCM pins; ``genre_leds`` lists the pins of
    the genre slot LEDs, named ``genre0``, ``genre1``, ... With ``thread=False``
    nothing runs by itself: call ``poll(now)`` (tests drive a fake clock this way).
    """

    def __init__(
        self,
        events: queue.Queue,
        *,
        buttons: Mapping[str, int] = BUTTON_PINS,
        leds: Mapping[str, int] = LED_PINS,
        genre_leds: Sequence[int] = (),
        pin_factory: str | Any | None = None,
        pull_up: bool = True,
        debounce_ms: float = _DEFAULTS.debounce_ms,
        long_press_ms: float = _DEFAULTS.long_press_ms,
        repeat_delay_ms: float = 400,
        repeat_ms: float = _DEFAULTS.repeat_ms,
        repeat_buttons: Sequence[str] = REPEAT_BUTTONS,
        poll_ms: float = 5,
        thread: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # DigitalInputDevice, not gpiozero's Button: hold timing is ours, and Button's
        # hold thread would make close() wait up to its hold_time.
        from gpiozero import LED, DigitalInputDevice

        super().__init__()
        self.events = events
        self.debounce = debounce_ms / 1000
        self.long_press = long_press_ms / 1000
        self.repeat_delay = repeat_delay_ms / 1000
        self.repeat = repeat_ms / 1000
        self._clock = clock
        self._poll_s = poll_ms / 1000
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._leds: dict[str, Any] = {}
        self._led_state: dict[str, tuple] = {}
        self.dropped = 0

        unknown = set(buttons) - set(BUTTONS)
        if unknown:
            raise UserError(
                f"unknown panel button(s) {', '.join(sorted(unknown))}"
                f" (known: {', '.join(BUTTONS)})"
            )
        led_pins = dict(leds) | {f"genre{i}": pin for i, pin in enumerate(genre_leds)}
        self.pins: dict[str, int] = dict(buttons) | led_pins  # every button and LED by name
        seen: dict[int, str] = {}
        for name, pin in [*buttons.items(), *led_pins.items()]:
            if pin in seen:
                raise UserError(f"GPIO {pin} is configured twice: {seen[pin]} and {name}")
            seen[pin] = name

        # A factory made here by name is ours to close; one passed in is the caller's.
        self._own_factory = isinstance(pin_factory, str)
        # A gpiozero factory (gpiozero has no types): ours when made from a name here.
        self.pin_factory: Any = make_pin_factory(pin_factory) if self._own_factory else pin_factory
        try:
            for name, pin in buttons.items():
                device = DigitalInputDevice(
                    pin, pull_up=pull_up, bounce_time=None, pin_factory=self.pin_factory
                )
                key = _Key(name, device, name in repeat_buttons)
                # A button already down at start (or shorted) stays silent until released.
                key.raw = key.stable = key.held = device.is_active
                key.raw_at = key.down_at = clock()
                # gpiozero's edge thread: record the level, nothing more. (A partial,
                # because gpiozero passes the device to a callable that takes one.)
                device.when_activated = partial(self._edge, key, True)
                device.when_deactivated = partial(self._edge, key, False)
                self._keys[name] = key
            for name, pin in led_pins.items():
                self._leds[name] = LED(pin, pin_factory=self.pin_factory)
                self._led_state[name] = ("off",)
        except Exception as exc:
            self.close()
            if isinstance(exc, UserError):
                raise
            raise UserError(f"cannot set up the panel's GPIO pins: {exc}") from exc
        if thread:
            self._thread = threading.Thread(target=self._run, name="panel", daemon=True)
            self._thread.start()

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        events: queue.Queue,
        *,
        pin_factory: str | Any | None = None,
        **options: Any,
    ) -> Panel:
        """The configured pins, factory and timing. ``pin_factory`` (a name or a gpiozero
        factory object) replaces the configured factory; ``options`` go to the constructor."""
        p = cfg.panel
        return cls(
            events,
            buttons=dataclasses.asdict(p.buttons),
            leds=dataclasses.asdict(p.leds),
            genre_leds=p.genre_leds,
            pin_factory=p.gpiozero_factory if pin_factory is None else pin_factory,
            debounce_ms=p.debounce_ms,
            long_press_ms=p.long_press_ms,
            repeat_ms=p.repeat_ms,
            **options,
        )

    # --- lifetime: close() (``Worker``) stops the thread, then this turns the LEDs off
    # and releases every pin
    def _release(self) -> None:
        for device in [*(k.device for k in self._keys.values()), *self._leds.values()]:
            try:
                device.close()  # an LED's close() stops its blink thread too
            except Exception as exc:
                log.warning(kv(event="panel_close_failed", error=exc))
        if self._own_factory and self.pin_factory is not None:
            self.pin_factory.close()

    # --- buttons
    def _edge(self, key: _Key, level: bool) -> None:
        with self._lock:
            if level != key.raw:
                key.raw = level
                key.raw_at = self._clock()

    def poll(self, now: float | None = None) -> list[Button]:
        """Debounce, detect holds and repeats; put the resulting events on the queue.

        Returns them too, which is handy in tests. The panel thread calls this
        every ``poll_ms``.
        """
        now = self._clock() if now is None else now
        out: list[Button] = []
        with self._lock:
            for key in self._keys.values():
                level = key.device.is_active  # catches an edge the callback missed
                if level != key.raw:
                    key.raw, key.raw_at = level, now
                out.extend(self._step(key, now))
        for event in out:
            try:
                # Not a callback: waiting a little for room is fine; a press is rare.
                self.events.put(event, timeout=0.1)
            except queue.Full:
                self.dropped += 1
                log.warning(kv(event="panel_event_dropped", button=event.name, kind=event.kind))
        return out

    def _step(self, key: _Key, now: float) -> list[Button]:
        if key.raw != key.stable and now - key.raw_at >= self.debounce - _EPS:
            key.stable = key.raw
            if key.stable:
                key.down_at = key.raw_at
                key.held = False
                key.next_repeat = key.down_at + self.repeat_delay
            elif not key.held:
                return [Button(key.name, "press", now)]
            return []
        if not key.stable:
            return []
        if key.repeats:
            if now >= key.next_repeat - _EPS:
                key.held = True
                key.next_repeat += self.repeat
                if key.next_repeat <= now:  # a stalled loop gets one repeat, not a volley
                    key.next_repeat = now + self.repeat
                return [Button(key.name, "repeat", now)]
        elif not key.held and now - key.down_at >= self.long_press - _EPS:
            key.held = True
            return [Button(key.name, "long", now)]
        return []

    @property
    def pressed(self) -> dict[str, bool]:
        """The debounced level of every button."""
        with self._lock:
            return {name: key.stable for name, key in self._keys.items()}

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.poll()
            except Exception as exc:  # a hiccup must not silence the panel for good
                log.error(kv(event="panel_poll_failed", error=exc))

    # --- LEDs
    def set_led(self, name: str, mode: str, on_time: float = 0.25, off_time: float = 0.25) -> None:
        """``mode`` is "on", "off" or "blink" (with ``on_time``/``off_time`` seconds).

        Setting the same mode again does nothing, so a blink does not restart.
        """
        if name not in self._leds:
            raise ValueError(f"unknown LED {name!r} (known: {', '.join(self._leds)})")
        if mode not in LED_MODES:
            raise ValueError(f"LED mode must be one of {', '.join(LED_MODES)}, not {mode!r}")
        state = (mode, on_time, off_time) if mode == "blink" else (mode,)
        if self._led_state[name] == state:
            return
        led = self._leds[name]
        if self._led_state[name][0] == "count":
            led.source = None  # stops the count's thread, or it would set the pin again
        if mode == "on":
            led.on()
        elif mode == "off":
            led.off()
        else:
            led.blink(on_time=on_time, off_time=off_time, background=True)
        self._led_state[name] = state

    def set_genre(self, index: int | None) -> None:
        """Show genre ``index`` on its slot LED (see :func:`genre_slot`), the others dark;
        ``None`` darkens them all. A no-op without genre LEDs."""
        slots = [name for name in self._leds if name.startswith("genre")]
        if not slots:
            return
        slot, count = genre_slot(index, len(slots)) if index is not None else (-1, 0)
        for i, name in enumerate(slots):
            if i != slot:
                self.set_led(name, "off")
            elif count == 0:
                self.set_led(name, "on")
            else:
                self._count_blink(name, count)

    def _count_blink(self, name: str, count: int) -> None:
        """Blink ``count`` times, rest, and again, until the LED is set otherwise."""
        if self._led_state[name] == ("count", count):
            return
        led = self._leds[name]
        led.source = None
        led.off()  # also ends a plain blink
        # gpiozero's source thread sets the pin from the pattern every step.
        led.source_delay = COUNT_STEP_S
        led.source = itertools.cycle(count_pattern(count))
        self._led_state[name] = ("count", count)

    @property
    def leds(self) -> dict[str, str]:
        """Every LED's mode ("on", "off" or "blink"; a genre slot's count blink is
        "blink"), for ``deepkeys status`` and the sim."""
        return {
            name: "blink" if state[0] == "count" else state[0]
            for name, state in self._led_state.items()
        }
