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


def panel_test(
    cfg: Config,
    *,
    timeout: float = 60.0,
    led_s: float = LED_S,
    pin_factory: Any | None = None,
    out: Callable[[str], None] = print,
    on_ready: Callable[[Any], None] | None = None,
) -> set[str]:
    """LEDs one by one, then wait until every button was pressed (or ``timeout``).

    Returns the buttons seen. ``pin_factory`` (a gpiozero factory object) replaces
    the configured one; ``on_ready(panel)`` runs once it waits for presses (tests).
    """
    from deepkeys.device.adapters.panel import Panel

    events: queue.Queue = queue.Queue()
    seen: set[str] = set()
    with Panel.from_config(cfg, events, pin_factory=pin_factory) as panel:
        for name in panel.leds:
            out(f"led {name} on (GPIO {panel.pins[name]})")
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
            out(f"button {event.name} {event.kind} (GPIO {panel.pins[event.name]})")
    return seen
