"""The daemon's log format: one ``key=value`` line per event, easy to grep and to parse."""

from __future__ import annotations

import json
from typing import Any


def kv(**fields: Any) -> str:
    """One ``key=value`` log line; values with spaces are quoted.

    >>> kv(event="midi_connected", port="AKM322:AKM322 MIDI 1 20:0")
    'event=midi_connected port="AKM322:AKM322 MIDI 1 20:0"'
    """
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\n'):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)
