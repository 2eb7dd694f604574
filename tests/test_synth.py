"""The live synth: real FluidSynth, checked on the signal it renders."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from deepkeys.device import events
from deepkeys.device.errors import UserError
from deepkeys.device.soundfont import SOUNDFONT_ENV

pytest.importorskip("fluidsynth", reason="pyfluidsynth (and libfluidsynth3) not installed")

from deepkeys.device.adapters.synth import CONTROL, LIVE_CHANNEL, NOTE_ON, Synth

RATE = 48000
ORGAN = 19  # GM church organ: holds its level while a key is down, so sustain is measurable


@pytest.fixture
def synth(soundfont: Path):
    # No reverb: a dry signal makes onsets and decays unambiguous.
    s = Synth(soundfont, rate=RATE, reverb=False)
    yield s
    s.close()


def run(synth: Synth, seconds: float, block: int = 128) -> np.ndarray:
    """Render in audio-thread-sized blocks; float samples of shape (frames, 2)."""
    n = int(seconds * RATE) // block
    return np.concatenate([synth.render(block).copy() for _ in range(n)]).astype(np.float64)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def onset(x: np.ndarray, threshold: float = 20.0) -> int:
    """First frame where the signal clearly leaves silence (dither is +-1)."""
    loud = np.nonzero(np.abs(x[:, 0]) > threshold)[0]
    assert len(loud), "no note in the signal"
    return int(loud[0])


def dominant_hz(x: np.ndarray) -> float:
    mono = x.mean(axis=1) * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(mono))
    k = int(np.argmax(spectrum))
    # Parabolic interpolation between FFT bins for a sub-bin estimate.
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * RATE / len(mono)


def test_render_shape_and_silence(synth: Synth) -> None:
    block = synth.render(128)
    assert block.shape == (128, 2) and block.dtype == np.int16
    assert np.abs(run(synth, 0.2)).max() <= 2  # only dither


@pytest.mark.parametrize("offset", [0, 40, 64, 100, 200])
def test_note_on_starts_at_its_sample_offset(soundfont: Path, offset: int) -> None:
    # The reference: the same note applied at the start of a block.
    ref_synth = Synth(soundfont, rate=RATE, reverb=False)
    ref_synth.render(4800)
    ref = np.concatenate(
        [ref_synth.render(256, [(0, NOTE_ON, 0, 60, 110)]).copy()]
        + [ref_synth.render(256).copy() for _ in range(8)]
    ).astype(np.float64)
    ref_synth.close()

    s = Synth(soundfont, rate=RATE, reverb=False)
    s.render(4800)
    out = np.concatenate(
        [s.render(256, [(offset, NOTE_ON, 0, 60, 110)]).copy()]
        + [s.render(256).copy() for _ in range(8)]
    ).astype(np.float64)
    s.close()

    shift = onset(out) - onset(ref)
    # FluidSynth starts an event at its next internal 64-frame block: never early,
    # never a whole block late.
    assert offset <= shift < offset + 64
    assert shift == -(-offset // 64) * 64
    # And it is the same sound, just later (dither differs by a count or two).
    n = len(out) - shift
    assert np.abs(out[shift:] - ref[:n]).max() <= 4
    assert np.abs(out[: shift + 1]).max() <= 2  # silence before it


def test_queued_note_sounds_in_the_next_block(synth: Synth) -> None:
    synth.render(4800)
    synth.noteon(60, 110)
    assert synth.pending == 1
    block = synth.render(128).copy()
    assert synth.pending == 0
    assert [e[:4] for e in synth.last_live] == [(NOTE_ON, LIVE_CHANNEL, 60, 110)]
    tail = run(synth, 0.1)
    sound = np.concatenate([block.astype(np.float64), tail])
    assert onset(sound) < 400  # the piano sample starts within the first blocks
    assert rms(sound) > 100


def test_pitch_bend_changes_the_pitch(synth: Synth) -> None:
    synth.noteon(69, 100)  # A4 on the piano
    straight = dominant_hz(run(synth, 0.6)[4800:])
    synth.pitch_bend(8191)  # full bend up: 2 semitones by FluidSynth's default range
    up = dominant_hz(run(synth, 0.6)[4800:])
    synth.pitch_bend(-8192)
    down = dominant_hz(run(synth, 0.6)[4800:])
    assert straight == pytest.approx(440.0, rel=0.005)
    assert up / straight == pytest.approx(2 ** (2 / 12), rel=0.005)
    assert down / straight == pytest.approx(2 ** (-2 / 12), rel=0.005)


def test_sustain_pedal_holds_a_released_note(synth: Synth) -> None:
    synth.program_change(ORGAN)
    synth.noteon(60, 100)
    held = rms(run(synth, 0.4)[-4800:])
    synth.noteoff(60)
    free = rms(run(synth, 0.6)[-4800:])
    assert free < 0.01 * held  # without the pedal the organ stops

    synth.cc(64, 127)  # pedal down
    synth.noteon(60, 100)
    run(synth, 0.4)
    synth.noteoff(60)
    pedalled = rms(run(synth, 0.6)[-4800:])
    assert pedalled > 0.7 * held  # the pedal keeps it sounding
    synth.cc(64, 0)  # pedal up: now it ends
    assert rms(run(synth, 0.6)[-4800:]) < 0.01 * held


def test_all_notes_off_silences_within_a_short_release(synth: Synth) -> None:
    for channel in (0, 1):
        synth.program_change(ORGAN, channel)
        synth.cc(64, 127, channel)  # even with the pedal held
        for note in (60, 64, 67):
            synth.noteon(note, 100, channel)
    before = rms(run(synth, 0.3)[-4800:])
    synth.all_notes_off()
    after = run(synth, 0.5)
    assert rms(after[-4800:]) < 0.01 * before


def test_all_notes_off_one_channel_leaves_the_others(synth: Synth) -> None:
    for channel in (0, 1):
        synth.program_change(ORGAN, channel)
    synth.noteon(60, 100, channel=0)
    alone = rms(run(synth, 0.4)[-9600:])
    synth.noteon(79, 100, channel=1)
    both = rms(run(synth, 0.4)[-9600:])
    assert both > 1.2 * alone
    synth.all_notes_off(channel=1)
    left = rms(run(synth, 0.6)[-9600:])
    assert left == pytest.approx(alone, rel=0.15)  # channel 0 plays on, unchanged
    synth.all_notes_off(channel=0)
    assert rms(run(synth, 0.6)[-4800:]) < 0.01 * alone


def test_events_from_another_thread_are_all_applied_in_order(synth: Synth) -> None:
    n = 2000

    def player() -> None:
        for i in range(n):
            synth.cc(7, i % 128, channel=2)

    thread = threading.Thread(target=player)
    thread.start()
    seen: list[int] = []
    while thread.is_alive() or synth.pending:
        synth.render(128)
        seen += [e[3] for e in synth.last_live]
    thread.join()
    assert seen == [i % 128 for i in range(n)]
    assert all(e[0] == CONTROL for e in synth.last_live)


def test_handle_daemon_events_keeps_arrival_time(synth: Synth) -> None:
    assert synth.handle(events.NoteOn(60, 90, t=12.5))
    assert synth.handle(events.ControlChange(64, 127, t=12.6))
    assert synth.handle(events.PitchBend(-100, t=12.7))
    assert synth.handle(events.NoteOff(60, t=12.8))
    assert not synth.handle(events.Button("play"))
    synth.render(128)
    assert [(e[0], e[4]) for e in synth.last_live] == [
        (0x90, 12.5),
        (0xB0, 12.6),
        (0xE0, 12.7),
        (0x80, 12.8),
    ]


def test_missing_soundfont_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="no such SoundFont"):
        Synth(tmp_path / "missing.sf2")
    not_sf2 = tmp_path / "fake.sf2"
    not_sf2.write_bytes(b"not a soundfont at all")
    with pytest.raises(UserError, match="not a SoundFont"):
        Synth(not_sf2)
    monkeypatch.setenv(SOUNDFONT_ENV, str(tmp_path / "gone.sf2"))
    with pytest.raises(UserError, match="DEEPKEYS_SOUNDFONT"):
        Synth()


def test_bad_channel_is_refused(synth: Synth) -> None:
    with pytest.raises(ValueError):
        synth.noteon(60, 100, channel=16)


def test_a_compositions_drums_on_channel_10_play_the_kit(synth):
    """Drum tracks carry no program change, as in a MIDI file: channel 10 must already
    hold the percussion kit, or the drums are silent (a bug the HIL suite caught)."""

    def hit(channel: int, note: int) -> np.ndarray:
        first = synth.render(256, [(0, NOTE_ON, channel, note, 110)]).copy()
        out = np.concatenate([first] + [synth.render(256).copy() for _ in range(20)])
        synth.all_notes_off()
        run(synth, 1.0)
        return out.astype(np.float64).mean(axis=1)

    snare = hit(9, 38)
    assert rms(snare) > 300
    spectrum = np.abs(np.fft.rfft(snare))
    freqs = np.fft.rfftfreq(len(snare), 1 / synth.rate)
    assert spectrum[freqs > 2000].sum() > 0.3 * spectrum.sum()  # noise-like, not a pitch
