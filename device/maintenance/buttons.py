"""``deepkeys buttons``: light each LED in turn, then show each button as it is pressed.

For wiring checks on the bench. It needs the pins, so the daemon must be stopped.

    >>> seen = panel_test(load_config(), timeout=60)         # doctest: +SKIP
    led rec on
    ...
    button genre press
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from deepkeys.device.config import Config
from deepkeys.device.events import BUTTONS

LED_S = 0.4


def panel_test(cfg: Config, *, timeout: float = 60.0, led_s: float = LED_S,
               pin_factory: Any | None = None, out: Callable[[str], None] = print,
               on_ready: Callable[[Any], None] | None = None) -> set[str]:
    """LEDs one by one, then wait until every button was pressed (or ``timeout``).

    Returns the buttons seen. ``pin_factory`` (a gpiozero factory object) replaces
    the configured one; ``on_ready(panel)`` runs once it waits for presses (tests).
    """
    from deepkeys.device.adapters.panel import Panel

    p = cfg.panel
    events: queue.Queue = queue.Queue()
    buttons = {name: getattr(p.buttons, name) for name in BUTTONS}
    leds = {name: getattr(p.leds, name) for name in ("rec", "busy", "play")}
    seen: set[str] = set()
    with Panel(events, buttons=buttons, leds=leds, genre_leds=p.genre_leds,
               pin_factory=pin_factory if pin_factory is not None else p.gpiozero_factory,
               debounce_ms=p.debounce_ms, long_press_ms=p.long_press_ms,
               repeat_ms=p.repeat_ms) as panel:
        for name in panel.leds:
            pin = leds.get(name, p.genre_leds[int(name[5:])] if name.startswith("genre") else -1)
            out(f"led {name} on (GPIO {pin})")
            panel.set_led(name, "on")
            time.sleep(led_s)
            panel.set_led(name, "off")
        out(f"press each button: {', '.join(BUTTONS)} (within {timeout:g} s, Ctrl-C ends)")
        if on_ready is not None:
            on_ready(panel)
        deadline = time.monotonic() + timeout
        while seen != set(BUTTONS) and time.monotonic() < deadline:
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.add(event.name)
            out(f"button {event.name} {event.kind} (GPIO {buttons[event.name]})")
    return seen
