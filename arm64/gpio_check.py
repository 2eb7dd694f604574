"""Inside the emulated arm64 root: lgpio (PyPI's aarch64 wheel) imports and loads its C
library, and gpiozero's default pin factory, asked with no $GPIOZERO_PIN_FACTORY (the
config's ``pin_factory = "auto"``), is lgpio: the first name it tries, and the one it falls
back from only because this root has no /dev/gpiochip* (no real GPIO under emulation)."""

from __future__ import annotations

import os
import platform
import sys
import warnings
from importlib.metadata import entry_points, version


def main() -> int:
    print(f"machine: {platform.machine()}")
    import lgpio

    print(f"lgpio {version('lgpio')} imported from {lgpio.__file__}")
    try:
        handle = lgpio.gpiochip_open(0)
    except lgpio.error as exc:
        print(f"lgpio.gpiochip_open(0): {exc} (expected: no GPIO chip under emulation)")
    else:
        lgpio.gpiochip_close(handle)
        print("lgpio.gpiochip_open(0): opened (a GPIO chip is visible)")

    from gpiozero import Device
    from gpiozero.exc import BadPinFactory

    from deepkeys.device.config import Config

    names = [ep.name for ep in entry_points(group="gpiozero_pin_factories")]
    print(f"gpiozero {version('gpiozero')}: pin factories installed: {', '.join(names)}")
    panel = Config().panel
    print(f"deepkeys default config: pin_factory = {panel.pin_factory!r}")
    os.environ.pop("GPIOZERO_PIN_FACTORY", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            factory = Device._default_pin_factory()
        except BadPinFactory as exc:
            factory = None
            print(f"gpiozero default factory: none loads here ({exc})")
    tried = [str(w.message) for w in caught]
    for line in tried:
        print(f"  gpiozero: {line}")
    if factory is not None:
        print(f"gpiozero default factory: {type(factory).__name__}")
        picked = type(factory).__module__.endswith(".lgpio")
    else:
        # gpiozero tried lgpio first and fell back only because there is no GPIO chip:
        # its own message names lgpio, and lgpio itself imported (above).
        picked = bool(tried) and "lgpio" in tried[0] and "No module named" not in tried[0]
    ok = "lgpio" in names and panel.pin_factory == "auto" and picked
    print("gpio check:", "PASS (lgpio is gpiozero's default pin factory)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
