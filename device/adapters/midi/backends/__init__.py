"""MIDI input backends, chosen by name as mido chooses its own.

Each backend lists its sources, opens one of them (or a virtual port of our own)
with a callback for raw bytes, and is drained by the input's reader thread:

- ``rtmidi``: python-rtmidi on the ALSA sequencer (the Pi) or on JACK (tests);
- ``sim``: an in-process port that ``send()`` feeds, for the simulator and tests.

May import the ground floor only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from deepkeys.device.errors import UserError

RawCallback = Callable[[Sequence[int]], None]
Closer = Callable[[], None]

#: Our names for mido's rtmidi backends; the config's ``midi.api`` takes either.
BACKENDS = {
    "alsa": "mido.backends.rtmidi/LINUX_ALSA",
    "jack": "mido.backends.rtmidi/UNIX_JACK",
    "sim": None,
    "virtual": None,
}


def rtmidi_api(backend: str) -> str | None:
    """Our backend name or mido's -> the rtmidi API name (``None`` for sim)."""
    key = backend.strip()
    if key.lower() in BACKENDS:
        mido_name = BACKENDS[key.lower()]
    elif key.startswith("mido.backends.rtmidi/"):
        mido_name = key
    else:
        raise UserError(f"unknown MIDI backend {backend!r} (choose from {', '.join(BACKENDS)})")
    return None if mido_name is None else mido_name.split("/", 1)[1]
