"""systemd's sd_notify protocol, without a dependency.

Under ``Type=notify`` systemd sets ``$NOTIFY_SOCKET``; the daemon sends datagrams
such as ``READY=1`` there. With ``WatchdogSec=`` it also sets ``$WATCHDOG_USEC``
and expects ``WATCHDOG=1`` well within that time, or it restarts the service.
Outside systemd every call is a no-op that returns False.

The main loop says it is ready, then feeds the watchdog at half the interval:

    ready()
    interval = watchdog_interval()        # seconds, or None
    ...
    if interval and now - fed >= interval / 2:
        watchdog(); fed = now
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1", several lines allowed) to systemd.

    Returns True when it was sent, False when not under systemd. A socket that
    has gone away is not worth crashing the daemon for: that is False too.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        return False  # vsock and other families: not on our Pi
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def ready(status: str | None = None) -> bool:
    """Startup is complete: systemd considers the service started."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def watchdog() -> bool:
    """Still alive: feed the watchdog."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """A one-line status that ``systemctl status deepkeys`` shows."""
    return notify(f"STATUS={text.splitlines()[0] if text else ''}")


def stopping() -> bool:
    """Shutdown has begun."""
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """systemd's watchdog interval in seconds, or None when there is none for us.

    ``$WATCHDOG_PID``, when set, names the process that must feed it; another
    process (a child, a test runner) gets None. ``WATCHDOG_USEC=20000000`` -> 20.0.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
