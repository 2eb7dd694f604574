"""MIDI in: every keyboard's keys as events on the main loop's queue.

``MidiInput`` connects to every hardware MIDI source it can see (or to those whose
names contain a configured substring), turns each message into an event from
:mod:`~deepkeys.device.events` and puts it on the caller's queue. A watcher thread polls the port
list, so a keyboard that is unplugged and plugged back is picked up again.

Backends are chosen by name, as mido chooses its backends:

- ``"alsa"``: python-rtmidi on the ALSA sequencer (the Pi). It never falls back to
  JACK: with no /dev/snd/seq it fails with a one-line UserError.
- ``"jack"``: python-rtmidi on a running JACK server (tests, studio setups).
- ``"sim"`` (or ``"virtual"``): an in-process port; ``send()`` feeds it.

The mido names ``"mido.backends.rtmidi/LINUX_ALSA"`` and
``"mido.backends.rtmidi/UNIX_JACK"`` are accepted too. Ports are opened with
python-rtmidi directly and the bytes parsed with mido, because mido's own rtmidi
port drops malformed bytes silently (we count them) and queues without bound when
no callback is set.

rtmidi queues each port's bytes; one reader thread of ours drains them every
millisecond (see ``RtMidiPorts`` for why not rtmidi's callbacks) and calls our
per-port callback, which only parses, counts and enqueues. Nothing it does can
raise, block or grow without bound:

- sysex is counted and ignored; bytes mido cannot parse are counted as "invalid";
- one source connected twice (our own connection to it, and a patchbay's to our
  virtual port) delivers every message twice, once through each: the same bytes from
  another connection within :data:`DUPLICATE_S` are dropped and counted as
  "duplicate", so each key is heard once. Repeats from one connection always pass;
  two keyboards playing the same note at the same velocity within that time sound
  it once;
- when the queue is full (or holds ``queue_limit`` items), new NoteOns are dropped
  and counted, while NoteOffs, controllers and pitch bend wait in a small
  coalescing buffer (at most one per note / controller state) that is flushed
  as soon as there is room, so a flood never leaves a note or the sustain pedal
  stuck.

    >>> import queue
    >>> q = queue.Queue(maxsize=1024)
    >>> with MidiInput(q, backend="sim") as midi:
    ...     midi.send(mido.Message("note_on", note=60, velocity=90))
    ...     q.get_nowait()
    NoteOn(note=60, velocity=90, t=...)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import mido

from deepkeys.device.adapters.midi.backends import Closer, RawCallback, rtmidi_api
from deepkeys.device.adapters.midi.backends.rtmidi import RtMidiPorts
from deepkeys.device.adapters.midi.backends.sim import SIM_PORT, SimPorts
from deepkeys.device.events import ControlChange, NoteOff, NoteOn, PitchBend
from deepkeys.device.log import kv
from deepkeys.device.worker import Worker

if TYPE_CHECKING:
    from deepkeys.device.config import Config

log = logging.getLogger(__name__)

#: ALSA's loopback client: never a keyboard, and connecting to it echoes our own output.
SKIP_PORTS = ("Midi Through",)
#: The same message from another connection this soon is the same message again: both
#: copies come in the same JACK cycle (ALSA: the same dispatch) and one drain.
DUPLICATE_S = 0.03
_RECENT_MAX = 4096  # messages remembered for that, whatever a flood sends


def to_event(msg: mido.Message, t: float) -> NoteOn | NoteOff | ControlChange | PitchBend | None:
    """One mido message -> one event, or ``None`` for kinds the daemon ignores.

    Every controller passes through unchanged: CC 64 (sustain) and the DeepComposer
    keyboard's CC 105/106/107 (play, stop, record) are mapped by the state machine.

    >>> to_event(mido.Message("note_on", note=60, velocity=0), t=1.0)
    NoteOff(note=60, t=1.0)
    """
    if msg.type == "note_on":
        return NoteOn(msg.note, msg.velocity, t) if msg.velocity else NoteOff(msg.note, t)
    if msg.type == "note_off":
        return NoteOff(msg.note, t)
    if msg.type == "control_change":
        return ControlChange(msg.control, msg.value, t)
    if msg.type == "pitchwheel":
        return PitchBend(msg.pitch, t)
    return None


# --- the adapter ------------------------------------------------------------------------
class MidiInput(Worker):
    """Every keyboard's messages as events on ``events``; see the module docstring.

    ``ports``: name substrings to connect to (case-insensitive); empty means every
    source except our own ports and "Midi Through". ``virtual_port``: also open an
    input port of that name that other programs (and tests) can connect to.
    ``poll_s``: how often the watcher looks for (un)plugged keyboards. ``read_s``:
    how often the reader drains rtmidi's queues when idle. ``queue_limit`` bounds what
    we put on an unbounded queue. ``on_event(event)``, if given, gets every event on
    the reader thread before it is queued, even one the full queue then drops: the
    daemon sounds keys there, so sound never waits for the main loop. It must be
    quick and must not block; what it raises is counted as an error. With
    ``watch=False`` there is no thread: call ``rescan()`` and ``flush()`` yourself.

    >>> import queue
    >>> q = queue.Queue(maxsize=1024)
    >>> midi = MidiInput(q, backend="sim", watch=False)
    >>> midi.send([0x90, 60, 0])                  # note on with velocity 0
    >>> q.get_nowait()
    NoteOff(note=60, t=...)
    >>> midi.sim.unplug("sim keyboard"); midi.rescan(); midi.stats()["ports"]
    []
    >>> midi.close()
    """

    def __init__(
        self,
        events: queue.Queue,
        backend: str = "alsa",
        *,
        ports: Sequence[str] = (),
        client_name: str = "deepkeys",
        virtual_port: str | None = None,
        poll_s: float = 0.5,
        read_s: float = 0.001,
        queue_limit: int = 1024,
        watch: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__()
        self.events = events
        self.on_event = on_event
        api = rtmidi_api(backend)
        self.backend = backend
        self.client_name = client_name
        self.queue_limit = queue_limit
        self._filters = [p.lower() for p in ports if p]
        self._clock = clock
        self._poll_s = poll_s
        self._lock = threading.Lock()  # counts, pending, sounding: shared by callbacks
        self._scan_lock = threading.Lock()  # the connection table
        self._counts: Counter[str] = Counter()
        self._pending: OrderedDict[tuple, Any] = OrderedDict()
        self._sounding: set[int] = set()
        self._conns: dict[str, Closer] = {}
        # message bytes -> (connection, time): the last time each message came
        self._recent: OrderedDict[tuple[int, ...], tuple[str, float]] = OrderedDict()
        self._failed: dict[str, str] = {}  # port -> last error, so it is logged once
        self._connects = 0
        self._disconnects = 0
        self._logged_counts: Counter[str] = Counter()
        self._logged_at = float("-inf")
        self._virtual: tuple[str, Closer] | None = None

        self.sim: SimPorts | None = None
        self._backend: SimPorts | RtMidiPorts
        if api is None:
            self.sim = self._backend = SimPorts()
        else:
            self._backend = RtMidiPorts(api, client_name, read_s)
        try:
            if virtual_port:
                closer = self._backend.open_virtual(
                    virtual_port, self._callback(f"virtual:{virtual_port}")
                )
                self._virtual = (virtual_port, closer)
                log.info(kv(event="midi_virtual_port", backend=backend, port=virtual_port))
            self.rescan()
        except BaseException:
            self.close()
            raise
        if watch:
            self._thread = threading.Thread(target=self._watch, name="midi-watch", daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, cfg: Config, events: queue.Queue, **options: Any) -> MidiInput:
        """The configured backend, port filters and virtual port; ``options`` (``on_event``,
        ``queue_limit``...) go to the constructor."""
        m = cfg.midi
        return cls(
            events, backend=m.api, ports=m.input_ports, virtual_port=m.virtual_port_name, **options
        )

    # --- lifetime: close() (``Worker``) stops the watcher, then this closes every port
    def _release(self) -> None:
        with self._scan_lock:
            closers = list(self._conns.values())
            self._conns.clear()
            if self._virtual:
                closers.append(self._virtual[1])
                self._virtual = None
        for closer in closers:
            try:
                closer()
            except Exception as exc:  # a port that vanished may fail to close; go on
                log.warning(kv(event="midi_close_failed", error=exc))
        self._backend.close()

    # --- ports
    @property
    def ports(self) -> list[str]:
        """The sources we are connected to now."""
        with self._scan_lock:
            return sorted(self._conns)

    def _wants(self, name: str) -> bool:
        if name.split(":", 1)[0].startswith(self.client_name):
            return False  # our own client (rtmidi may suffix it: "deepkeys-01")
        if any(skip in name for skip in SKIP_PORTS):
            return False
        return not self._filters or any(f in name.lower() for f in self._filters)

    def rescan(self) -> None:
        """Connect to new sources and forget vanished ones; the watcher calls this."""
        with self._scan_lock:
            if self._closed:
                return
            available = self._backend.sources()
            for name in [n for n in self._conns if n not in available]:
                closer = self._conns.pop(name)
                self._disconnects += 1
                log.info(kv(event="midi_disconnected", port=name))
                try:
                    closer()
                except Exception as exc:
                    log.warning(kv(event="midi_close_failed", port=name, error=exc))
            for name in available:
                if name in self._conns or not self._wants(name):
                    continue
                try:
                    self._conns[name] = self._backend.open(name, self._callback(name))
                except Exception as exc:  # it may vanish between listing and opening
                    if self._failed.get(name) != str(exc):
                        log.warning(kv(event="midi_connect_failed", port=name, error=exc))
                    self._failed[name] = str(exc)
                    continue
                self._failed.pop(name, None)
                self._connects += 1
                log.info(kv(event="midi_connected", port=name, backend=self.backend))

    def _watch(self) -> None:
        error = ""
        while not self._stop.wait(self._poll_s):
            try:
                self.rescan()
                self.flush()
                self._log_counts()
                error = ""
            except Exception as exc:  # keep watching: the server may come back
                if str(exc) != error:
                    log.error(kv(event="midi_watch_failed", error=exc))
                error = str(exc)

    # --- the callback path: parse, count, enqueue; never raise, block or grow
    def _callback(self, connection: str) -> RawCallback:
        """The callback of one connection (a source, or our virtual port)."""

        def on_bytes(data: Sequence[int]) -> None:
            try:
                self._on_bytes(data, connection)
            except Exception:  # nothing may escape into the reader (or the sim's sender)
                with self._lock:
                    self._counts["error"] += 1

        return on_bytes

    def _on_bytes(self, data: Sequence[int], connection: str) -> None:
        if self._closed:
            return
        now = self._clock()
        if not data:
            kind, msg = "invalid", None
        elif data[0] == 0xF0:
            kind, msg = "sysex", None  # patch dumps and the like: not ours to act on
        else:
            try:
                msg = mido.Message.from_bytes(data)
                kind = msg.type
            except (ValueError, TypeError):
                kind, msg = "invalid", None
        with self._lock:
            if msg is not None and self._duplicate(tuple(data), connection, now):
                self._counts["duplicate"] += 1
                return
            self._counts[kind] += 1
        event = to_event(msg, now) if msg is not None else None
        if event is not None:
            if self.on_event is not None:
                self.on_event(event)  # first: the sound does not wait for the queue
            self._emit(event)

    def _duplicate(self, key: tuple[int, ...], connection: str, now: float) -> bool:
        """True if another connection brought these bytes within DUPLICATE_S (lock held)."""
        recent = self._recent
        while recent:  # forget what is too old to be repeated (oldest first)
            oldest = next(iter(recent.values()))
            if now - oldest[1] <= DUPLICATE_S and len(recent) < _RECENT_MAX:
                break
            recent.popitem(last=False)
        seen = recent.get(key)
        if seen is not None and seen[0] != connection and now - seen[1] <= DUPLICATE_S:
            return True
        recent[key] = (connection, now)
        recent.move_to_end(key)
        return False

    def _full(self) -> bool:
        return self.events.full() or self.events.qsize() >= self.queue_limit

    def _emit(self, event: Any) -> None:
        with self._lock:
            self._flush_locked()
            if self._pending or self._full() or not self._put(event):
                self._hold(event)

    def _put(self, event: Any) -> bool:
        try:
            self.events.put_nowait(event)
        except queue.Full:  # another producer (the panel) took the last slot
            return False
        if isinstance(event, NoteOn):
            self._sounding.add(event.note)
        elif isinstance(event, NoteOff):
            self._sounding.discard(event.note)
        return True

    def _hold(self, event: Any) -> None:
        """No room: drop what can be lost, keep the latest state of everything else."""
        if isinstance(event, NoteOn) or (
            isinstance(event, NoteOff) and event.note not in self._sounding
        ):
            self._counts["dropped"] += 1
            return
        if isinstance(event, NoteOff):
            key: tuple = ("off", event.note)
        elif isinstance(event, ControlChange):
            # One slot for "on" values and one for "off": a pedal or transport CC
            # keeps its last press and its last release, in order.
            key = ("cc", event.control, event.value >= 64)
        else:
            key = ("bend",)
        if key in self._pending:
            self._counts["coalesced"] += 1
            del self._pending[key]
        self._pending[key] = event

    def _flush_locked(self) -> None:
        while self._pending and not self._full():
            key, event = next(iter(self._pending.items()))
            if not self._put(event):
                return
            del self._pending[key]

    def drain_now(self, limit: int = 16) -> None:
        """Take what the keyboards sent since the reader last looked, if no one is busy.

        The audio thread calls this just before each render, so a key that has just
        come sounds in that block rather than waiting for the reader's next round.
        It never blocks, and ``limit`` a port keeps a flood on the reader thread.
        """
        if not self._closed:
            self._backend.drain(limit, wait=False)

    def flush(self) -> None:
        """Move held-back events onto the queue if it has room (the watcher calls this)."""
        with self._lock:
            self._flush_locked()

    # --- the sim backend's input, stats
    def send(self, msg: mido.Message | Sequence[int], port: str = SIM_PORT) -> None:
        """Sim backend only: ``msg`` (a mido message or raw bytes) arrives from ``port``."""
        if self.sim is None:
            raise RuntimeError(f"send() needs the sim backend, not {self.backend!r}")
        data = msg.bytes() if isinstance(msg, mido.Message) else list(msg)
        self.sim.send(data, port)

    def stats(self) -> dict[str, Any]:
        """Counts per message kind and the connected ports, for ``deepkeys status``.

        ``counts`` holds mido's type names as received ("note_on", also with
        velocity 0; "control_change", ...) plus
        "sysex", "invalid" (unparseable bytes), "error" (a bug in our callback),
        "dropped" (notes lost to a full queue), "coalesced" (state events merged
        while the queue was full) and "duplicate" (a message that came again through a
        second connection to the same source, not counted under its type).
        """
        with self._lock:
            counts = dict(self._counts)
            pending = len(self._pending)
        return {
            "backend": self.backend,
            "ports": self.ports,
            "virtual_port": self._virtual[0] if self._virtual else None,
            "counts": counts,
            "pending": pending,
            "connects": self._connects,
            "disconnects": self._disconnects,
            "read_errors": getattr(self._backend, "read_errors", 0),
        }

    def _log_counts(self, every_s: float = 10.0) -> None:
        """Report trouble (invalid, sysex, dropped) from the watcher, never from callbacks."""
        now = time.monotonic()
        if now - self._logged_at < every_s:
            return
        with self._lock:
            trouble = {
                k: self._counts[k]
                for k in ("invalid", "sysex", "dropped", "coalesced", "error", "duplicate")
            }
        new = {
            k: v - self._logged_counts[k] for k, v in trouble.items() if v > self._logged_counts[k]
        }
        if new:
            log.warning(kv(event="midi_sanitized", **new))
            self._logged_counts.update(new)
            self._logged_at = now
