"""MIDI input: real JACK ports (a private jackd the tests start) and the sim backend.

JACK stands in for the Pi's ALSA sequencer here: this machine has no /dev/snd.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import time
from collections.abc import Callable, Iterator

import mido
import pytest

from deepkeys.device.adapters.midi import MidiInput, SimPorts
from deepkeys.device.errors import UserError
from deepkeys.device.events import ControlChange, NoteOff, NoteOn, PitchBend

rtmidi = pytest.importorskip("rtmidi", reason="python-rtmidi not installed")


def wait_for(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.01)


MidiEvent = NoteOn | NoteOff | ControlChange | PitchBend


def bare(event: MidiEvent) -> MidiEvent:
    """An event without its time, for comparing."""
    return dataclasses.replace(event, t=0.0)


def drain(q: queue.Queue) -> list[MidiEvent]:
    out: list[MidiEvent] = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def collect(q: queue.Queue, n: int, timeout: float = 5.0) -> list[MidiEvent]:
    """Exactly ``n`` events, waiting up to ``timeout``; then checks nothing else came."""
    out: list[MidiEvent] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        try:
            out.append(q.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"got {len(out)} of {n} events: {out}") from None
    return [bare(e) for e in out]


# --- a private JACK server --------------------------------------------------------------
@pytest.fixture(scope="session")
def jack_server() -> Iterator[str]:
    """``jackd -d dummy`` from the HIL rig's starter (``hil/jackd.py``), for the session;
    every client in this process uses it (the environment names it). Stopped by PID."""
    from deepkeys.hil.jackd import JackUnavailable, start_jackd

    try:
        server = start_jackd(period=256)
    except JackUnavailable as exc:
        pytest.skip(str(exc))
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    try:
        yield server.name
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Keyboard:
    """A virtual MIDI output port over JACK: the USB keyboard, as far as JACK can tell."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.port_name = f"{client}:keyboard"
        self.out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=client)
        self.out.open_virtual_port("keyboard")
        self.plugged = True

    def send(self, *messages) -> None:
        for msg in messages:
            self.out.send_message(msg.bytes() if isinstance(msg, mido.Message) else msg)

    def unplug(self) -> None:
        if self.plugged:  # a deleted rtmidi object segfaults if touched again
            self.plugged = False
            self.out.close_port()
            self.out.delete()


@pytest.fixture
def keyboards(jack_server: str) -> Iterator[Callable[[str], Keyboard]]:
    opened: list[Keyboard] = []

    def plug(client: str) -> Keyboard:
        kb = Keyboard(client)
        opened.append(kb)
        return kb

    yield plug
    for kb in opened:
        kb.unplug()


def note(n: int, velocity: int = 100) -> mido.Message:
    return mido.Message("note_on", note=n, velocity=velocity)


# --- real JACK ports ----------------------------------------------------------------
def test_connects_and_turns_messages_into_events(keyboards) -> None:
    kb = keyboards("kbd-events")
    other = keyboards("synth-out")  # filtered out by the port substring below
    q: queue.Queue = queue.Queue(maxsize=1024)
    with MidiInput(q, backend="jack", client_name="dk-events", ports=["KBD-EV"]) as midi:
        assert midi.ports == [kb.port_name]
        assert other.port_name not in midi.ports
        before = time.monotonic()
        kb.send(
            note(60),
            mido.Message("control_change", control=64, value=127),
            mido.Message("control_change", control=105, value=127),
            mido.Message("pitchwheel", pitch=-1000),
            mido.Message("aftertouch", value=5),  # counted, not an event
            mido.Message("program_change", program=3),  # likewise
            note(60, velocity=0),
            mido.Message("note_off", note=62, channel=9),
        )
        got = [q.get(timeout=5) for _ in range(6)]
        assert [bare(e) for e in got] == [
            NoteOn(60, 100),
            ControlChange(64, 127),
            ControlChange(105, 127),
            PitchBend(-1000),
            NoteOff(60),
            NoteOff(62),
        ]
        assert all(before <= e.t <= time.monotonic() for e in got)
        wait_for(lambda: midi.stats()["counts"].get("program_change") == 1)
        counts = midi.stats()["counts"]
        assert counts == {
            "note_on": 2,
            "note_off": 1,
            "control_change": 2,
            "pitchwheel": 1,
            "aftertouch": 1,
            "program_change": 1,
        }


def test_unplug_and_replug_reconnects(keyboards, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="deepkeys.device.adapters.midi")
    kb = keyboards("kbd-replug")
    q: queue.Queue = queue.Queue(maxsize=1024)
    with MidiInput(
        q, backend="jack", client_name="dk-replug", ports=["kbd-replug"], poll_s=0.1
    ) as midi:
        kb.send(note(60), note(60, 0))
        assert collect(q, 2) == [NoteOn(60, 100), NoteOff(60)]

        kb.unplug()
        wait_for(lambda: midi.ports == [], what="the watcher noticing the unplug")
        kb = keyboards("kbd-replug")
        wait_for(lambda: midi.ports == ["kbd-replug:keyboard"], what="the reconnection")
        kb.send(note(61), note(61, 0))
        assert collect(q, 2) == [NoteOn(61, 100), NoteOff(61)]
        stats = midi.stats()
        assert (stats["connects"], stats["disconnects"]) == (2, 1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count("event=midi_connected port=kbd-replug:keyboard backend=jack") == 2
    assert lines.count("event=midi_disconnected port=kbd-replug:keyboard") == 1


def test_garbage_and_sysex_are_counted_and_survived(keyboards) -> None:
    kb = keyboards("kbd-garbage")
    q: queue.Queue = queue.Queue(maxsize=1024)
    with MidiInput(q, backend="jack", client_name="dk-garbage", ports=["kbd-garbage"]) as midi:
        kb.send(
            [0x90, 60],  # truncated
            [0xF4],  # undefined status byte
            [0x90, 200, 3],  # data byte out of range
            [0x3C, 0x40],  # data without a status
            [0xF0, 0x41, 0x10, 0xF7],  # sysex
            [0xF0] + [0x11] * 300 + [0xF7],
            note(64),
        )
        assert collect(q, 1) == [NoteOn(64, 100)]
        counts = midi.stats()["counts"]
        assert (counts["invalid"], counts["sysex"], counts["note_on"]) == (4, 2, 1)


def test_flood_keeps_memory_bounded_and_leaves_no_stuck_notes(keyboards) -> None:
    kb = keyboards("kbd-flood")
    q: queue.Queue = queue.Queue(maxsize=64)  # and nobody reads it during the flood
    notes = 2000
    with MidiInput(
        q, backend="jack", client_name="dk-flood", ports=["kbd-flood"], watch=False
    ) as midi:
        start = time.monotonic()
        for i in range(0, notes, 20):  # 20 notes (40 messages) every 10 ms
            for n in range(i, i + 20):
                kb.send(note(36 + n % 48), note(36 + n % 48, 0))
            time.sleep(0.01)
        rate = notes / (time.monotonic() - start)
        assert rate > 1000, f"only {rate:.0f} notes/s sent"
        wait_for(
            lambda: midi.stats()["counts"].get("note_on", 0) == 2 * notes,
            what="every message reaching the callback",
        )
        stats = midi.stats()
        assert q.qsize() == 64  # the queue never grew past its bound
        assert stats["counts"]["dropped"] > notes
        assert stats["pending"] <= 48  # at most one held NoteOff per note

        delivered = []
        while True:  # the main loop catches up
            delivered += drain(q)
            midi.flush()
            if q.empty():
                break
        counts = midi.stats()["counts"]
        assert len(delivered) + counts["dropped"] + counts.get("coalesced", 0) == 2 * notes
        sounding: set[int] = set()
        for event in delivered:
            assert isinstance(event, NoteOn | NoteOff), event  # the keyboard sent only notes
            (sounding.add if isinstance(event, NoteOn) else sounding.discard)(event.note)
        assert sounding == set()  # every delivered NoteOn got its NoteOff

        kb.send(note(72))  # and it still plays
        assert collect(q, 1) == [NoteOn(72, 100)]


def test_drain_now_takes_waiting_keys_on_the_callers_thread(keyboards) -> None:
    """The audio thread's last look before a render: what rtmidi holds comes at once."""
    import threading

    kb = keyboards("kbd-drain")
    q: queue.Queue = queue.Queue()
    threads: list[str] = []
    with MidiInput(
        q,
        backend="jack",
        client_name="dk-drain",
        ports=["kbd-drain"],
        read_s=30.0,
        on_event=lambda e: threads.append(threading.current_thread().name),
    ) as midi:
        time.sleep(0.3)  # the reader has looked once and sleeps for read_s now
        kb.send(note(65))
        time.sleep(0.3)  # in rtmidi's queue, which nobody reads
        assert q.empty() and threads == []
        midi.drain_now()
        assert collect(q, 1) == [NoteOn(65, 100)]
        assert threads == [threading.current_thread().name]


def test_on_event_sees_every_key_even_one_the_full_queue_drops() -> None:
    seen: list = []
    q: queue.Queue = queue.Queue(maxsize=1)
    with MidiInput(q, backend="sim", watch=False, on_event=seen.append) as midi:
        midi.send(note(60))
        midi.send(note(62))  # no room: dropped from the queue...
        assert [bare(e) for e in seen] == [NoteOn(60, 100), NoteOn(62, 100)]  # ...not here
        assert midi.stats()["counts"]["dropped"] == 1

        def broken_hook(_event: MidiEvent) -> None:
            raise ZeroDivisionError("division by zero")  # what the hook's 1 / 0 raised

        midi.on_event = broken_hook  # a broken hook is counted, never raised
        midi.send(note(64))
        assert midi.stats()["counts"]["error"] == 1


def test_virtual_input_port_accepts_connections(jack_server: str) -> None:
    q: queue.Queue = queue.Queue()
    with MidiInput(
        q,
        backend="jack",
        client_name="dk-virtual",
        virtual_port="deepkeys in",
        ports=["nothing-matches"],
    ) as midi:
        assert midi.stats()["virtual_port"] == "deepkeys in"
        out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="sequencer")
        try:
            names = out.get_ports()
            target = [n for n in names if n.startswith("dk-virtual") and "deepkeys in" in n]
            assert len(target) == 1, names
            out.open_port(names.index(target[0]))
            out.send_message([0x90, 48, 80])
            assert collect(q, 1) == [NoteOn(48, 80)]
        finally:
            out.close_port()
            out.delete()


def test_a_source_connected_twice_is_heard_once(keyboards) -> None:
    """The daemon connects itself to the keyboard, and a patchbay (qjackctl, jack_connect, a
    session manager) also connects it to our input port: every key arrives twice."""
    import jack

    kb = keyboards("kbd-twice")
    q: queue.Queue = queue.Queue(maxsize=1024)
    heard: list[MidiEvent] = []
    with MidiInput(
        q,
        backend="jack",
        client_name="dk-twice",
        virtual_port="deepkeys in",
        ports=["kbd-twice"],
        on_event=heard.append,  # what the daemon sounds
    ) as midi:
        assert midi.ports == [kb.port_name]  # our own connection
        patchbay = jack.Client("patchbay", no_start_server=True)
        try:
            ours = [
                p.name
                for p in patchbay.get_ports(is_midi=True, is_input=True)
                if p.name.startswith("dk-twice") and p.name.endswith("deepkeys in")
            ]
            assert len(ours) == 1
            patchbay.connect(kb.port_name, ours[0])  # the second connection
            assert kb.port_name in [p.name for p in patchbay.get_all_connections(ours[0])]
            time.sleep(0.1)
            kb.send(note(60), mido.Message("control_change", control=64, value=127), note(60, 0))
            assert collect(q, 3) == [NoteOn(60, 100), ControlChange(64, 127), NoteOff(60)]
            time.sleep(0.3)
            assert drain(q) == [] and len(heard) == 3
            wait_for(lambda: midi.stats()["counts"].get("duplicate") == 3, what="3 duplicates")
            assert midi.stats()["counts"]["note_on"] == 2  # as received once: on and its off
            # The same key struck again later is a new note, heard once more.
            time.sleep(0.1)
            kb.send(note(60))
            assert collect(q, 1) == [NoteOn(60, 100)]
            time.sleep(0.2)
            assert drain(q) == [] and len(heard) == 4
        finally:
            patchbay.close()


def test_the_same_message_from_one_port_is_never_dropped() -> None:
    # Two quick identical notes from one keyboard are two notes; only a second connection
    # repeats a message within the window.
    q: queue.Queue = queue.Queue()
    with MidiInput(q, backend="sim", watch=False) as midi:
        for _ in range(3):
            midi.send(note(60))
        midi.send(note(60))
        assert [bare(e) for e in drain(q)] == [NoteOn(60, 100)] * 4
        assert "duplicate" not in midi.stats()["counts"]


def test_jack_without_server_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"deepkeys-absent-{os.getpid()}")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    with pytest.raises(UserError, match=r"JACK server not running\?"):
        MidiInput(queue.Queue(), backend="mido.backends.rtmidi/UNIX_JACK")


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="this machine has an ALSA sequencer")
def test_default_alsa_backend_does_not_fall_back_to_jack(jack_server: str) -> None:
    # A JACK server is running, yet the default backend must not quietly use it.
    with pytest.raises(UserError, match="no ALSA sequencer"):
        MidiInput(queue.Queue())


# --- the sim backend: same code path, no server --------------------------------------
def test_sim_send_and_counts() -> None:
    q: queue.Queue = queue.Queue()
    with MidiInput(q, backend="sim", watch=False) as midi:
        midi.send(note(60))
        midi.send(mido.Message("control_change", control=107, value=127))
        midi.send([0x90, 60])
        midi.send(mido.Message("sysex", data=[1, 2, 3]))
        midi.send([])
        assert collect(q, 2) == [NoteOn(60, 100), ControlChange(107, 127)]
        assert midi.stats()["counts"] == {
            "note_on": 1,
            "control_change": 1,
            "invalid": 2,
            "sysex": 1,
        }
        assert midi.stats()["ports"] == ["sim keyboard"]


def test_sim_port_selection_skips_our_own_and_midi_through() -> None:
    q: queue.Queue = queue.Queue()
    with MidiInput(q, backend="virtual", watch=False) as midi:
        assert midi.sim is not None
        for name in (
            "Midi Through:Midi Through Port-0 14:0",
            "deepkeys-01:out",
            "AKM322:AKM322 MIDI 1 20:0",
        ):
            midi.sim.plug(name)
        midi.rescan()
        assert midi.ports == ["AKM322:AKM322 MIDI 1 20:0", "sim keyboard"]
    with MidiInput(q, backend="sim", ports=["akm322"], watch=False) as midi:
        assert midi.sim is not None
        midi.sim.plug("AKM322:AKM322 MIDI 1 20:0")
        midi.rescan()
        assert midi.ports == ["AKM322:AKM322 MIDI 1 20:0"]


def test_sim_watcher_thread_reconnects() -> None:
    q: queue.Queue = queue.Queue()
    with MidiInput(q, backend="sim", poll_s=0.02) as midi:
        assert midi.sim is not None
        midi.sim.unplug("sim keyboard")
        wait_for(lambda: midi.ports == [])
        midi.send(note(60))  # nobody hears an unplugged keyboard
        midi.sim.plug("sim keyboard")
        wait_for(lambda: midi.ports == ["sim keyboard"])
        midi.send(note(62))
        assert collect(q, 1) == [NoteOn(62, 100)]
        assert q.empty()


def test_sim_flood_on_unbounded_queue_is_bounded_and_releases_pedal_and_notes() -> None:
    q: queue.Queue = queue.Queue()  # unbounded: queue_limit bounds us instead
    with MidiInput(q, backend="sim", queue_limit=100, watch=False) as midi:
        midi.send(mido.Message("control_change", control=64, value=127))
        for i in range(10_000):
            midi.send(note(40 + i % 30))
            midi.send(mido.Message("pitchwheel", pitch=i % 8000))
            midi.send(note(40 + i % 30, 0))
        midi.send(mido.Message("control_change", control=64, value=0))
        assert q.qsize() == 100
        assert midi.stats()["pending"] <= 30 + 2 + 1
        delivered = []
        while True:
            delivered += drain(q)
            midi.flush()
            if q.empty():
                break
    pedal = [e.value for e in delivered if isinstance(e, ControlChange)]
    assert pedal[0] == 127 and pedal[-1] == 0  # the pedal came back up
    bends = [e.value for e in delivered if isinstance(e, PitchBend)]
    assert bends[-1] == 9999 % 8000  # the latest bend wins
    sounding: set[int] = set()
    for event in delivered:
        if isinstance(event, NoteOn):
            sounding.add(event.note)
        elif isinstance(event, NoteOff):
            sounding.discard(event.note)
    assert sounding == set()


def test_nothing_escapes_the_callback() -> None:
    class Broken(queue.Queue):
        def put_nowait(self, item):
            raise RuntimeError("a bug downstream")

    with MidiInput(Broken(), backend="sim", watch=False) as midi:
        midi.send(note(60))  # must not raise into the port's thread
        assert midi.stats()["counts"]["error"] == 1


def test_send_needs_sim_and_names_are_checked() -> None:
    with pytest.raises(UserError, match="unknown MIDI backend 'coreaudio'"):
        MidiInput(queue.Queue(), backend="coreaudio")
    sim = SimPorts(ports=["a"])
    assert sim.send([0x90, 1, 1], "a") == 0  # nobody connected yet
