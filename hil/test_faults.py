"""The appliance under abuse: replug, SIGKILL mid-save, a stalled loop, MIDI floods."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

import mido

from deepkeys.hil.analysis import detect_pitch, onset_after
from deepkeys.hil.rig import Rig
from hil.test_compose import record_take


def assert_note_sounds(rig: Rig, note: int = 69) -> None:
    """One key, then its pitch in the capture after the key entered JACK."""
    rig.recorder.clear()
    time.sleep(0.3)
    rig.keyboard.note_on(note, 100)
    time.sleep(0.3)
    rig.keyboard.note_off(note)
    time.sleep(0.2)
    audio, rate = rig.recorder.audio(), rig.recorder.rate
    keys = [k for k in rig.recorder.tapped() if k.note == note]
    assert keys, "the key never entered JACK"
    onset = onset_after(audio, keys[-1].sample, rate)
    assert onset is not None, f"key {note} made no sound"
    assert round(detect_pitch(audio[onset + 480 : onset + 480 + 7200], rate)) == note


def test_unplug_and_replug_reconnects_and_the_next_note_sounds(rig: Rig) -> None:
    port = rig.keyboard.port
    assert rig.status()["midi"]["ports"] == [port]
    rig.keyboard.unplug()
    rig.wait_for(lambda: rig.status().get("midi", {}).get("ports") == [], 5, "the unplug")
    rig.replug_keyboard()
    rig.wait_for(lambda: rig.status().get("midi", {}).get("ports") == [port], 5, "the reconnection")
    midi = rig.status()["midi"]
    assert (midi["connects"], midi["disconnects"]) == (2, 1)
    assert_note_sounds(rig, 69)


def test_sigkill_while_saving_leaves_whole_files_or_none(make_rig) -> None:
    # A slow disk (every fsync waits 0.6 s) holds the save open long enough to kill it.
    rig = make_rig(tempo_bpm=240, max_bars=1, slow_fsync_s=0.6)
    mark = rig.mark()
    record_take(rig, [67, 69, 71, 72])
    rig.wait_event(lambda e: e.get("event") == "saved", 10, "the take saved", after=mark)
    folder = rig.state_dir / "compositions"
    rig.press("generate")
    # Kill once the .mid is being written: its temporary file is there, not yet renamed.
    rig.wait_for(lambda: list(folder.glob(".*.part")), 10, "the composition being saved")
    rig.stop_daemon(signal.SIGKILL)
    assert rig.proc.returncode == -signal.SIGKILL

    def whole() -> None:
        for mid in folder.glob("*.mid"):
            assert mido.MidiFile(mid).length > 0  # parses, to the end
        for side in folder.glob("*.json"):
            assert json.loads(side.read_text())["kind"] == "composition"

    whole()
    rig.start()  # the restart clears what the kill left half-written
    assert not list(folder.glob(".*.part"))
    whole()
    assert rig.status()["state"] == "idle"


def test_a_stalled_main_loop_stops_feeding_the_watchdog_and_keys_still_sound(make_rig) -> None:
    rig = make_rig(watchdog_usec=400_000, stall_s=2.0)  # fed every 0.2 s
    rig.wait_for(lambda: rig.count_notify("WATCHDOG=1") >= 3, 5, "the watchdog")
    uptime = rig.status()["uptime_s"]
    stalled = time.monotonic()
    os.kill(rig.pid, signal.SIGUSR1)  # the loop sleeps 2 s in the signal handler
    time.sleep(0.1)
    # Keys go from the MIDI reader to the synth, not through the main loop: a key
    # played during the stall sounds within 0.25 s of entering JACK, not 2 s later.
    assert_note_sounds(rig, 72)
    assert time.monotonic() < stalled + 1.5, "the stall was over before the key was checked"
    during = rig.status()  # the control thread still answers...
    assert during["uptime_s"] < uptime + 0.5  # ...from a snapshot the stalled loop left
    rig.wait_for(
        lambda: any(t > stalled + 2.0 for t in rig.notify_times("WATCHDOG=1")),
        5,
        "the watchdog after the stall",
    )
    times = rig.notify_times("WATCHDOG=1")
    gaps = [b - a for a, b in itertools.pairwise(times) if b > stalled]
    assert max(gaps) > 1.5  # > the 0.4 s interval: systemd would have restarted it
    assert rig.alive()


def test_midi_abuse_is_survived_and_stop_releases_stuck_notes(rig: Rig) -> None:
    kb = rig.keyboard
    kb.send([0x90, 60], [0xF4], [0x90, 200, 3], [0x3C, 0x40], [0xFF] * 3)  # garbage
    # A sysex flood: 200 patch dumps of 256 bytes in 0.2 s. Paced by 10 ms: sent all at
    # once, JACK itself (not the daemon) lost up to a third of the 51 kB burst (a JACK
    # client of the rig's own, tapping the same port, missed 4 to 61 of them).
    for i in range(200):
        kb.send([0xF0, 0x41] + [0x11] * 254 + [0xF7])
        if i % 10 == 9:
            time.sleep(0.01)
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < 10.0:  # 1,000 notes/s for 10 s
        for i in range(10):
            n = 36 + (sent + i) % 48
            kb.send([0x90, n, 90], [0x80, n, 0])
        sent += 10
        time.sleep(max(0.0, t0 + sent / 1000 - time.monotonic()))
    for n in (48, 55, 64, 71):  # and four keys left down: stuck, as after a lost note-off
        kb.note_on(n, 110)
    assert sent >= 9_500
    assert rig.alive()
    rig.wait_for(lambda: rig.status().get("voices", 0) >= 4, 10, "the held notes sounding")

    # STOP must come after the held keys: wait until the MIDI reader has drained the
    # flood (its note count stops moving, nothing pending), so the button queues behind
    # every key, not just behind any 4 sounding voices.
    def drained() -> bool:
        before = rig.status()["midi"]
        time.sleep(0.3)
        after = rig.status()["midi"]
        return before["counts"] == after["counts"] and not after.get("pending")

    rig.wait_for(drained, 10, "the MIDI backlog drained")
    midi = rig.status()["midi"]
    assert midi["counts"]["sysex"] == 200 and midi["counts"]["invalid"] >= 3
    rig.press("play")  # idle: PLAY/STOP is STOP, the panic button
    rig.wait_for(lambda: rig.status().get("voices") == 0, 5, "STOP releasing every note")
    rig.recorder.clear()
    time.sleep(0.5)
    assert abs(rig.recorder.audio()).max() < 0.002  # silence: nothing stuck
    for n in (48, 55, 64, 71):
        kb.note_off(n)
    assert_note_sounds(rig, 72)
