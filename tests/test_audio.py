"""The audio thread on real ALSA PCMs: a file PCM captures exactly what it wrote,
JACK gives a real-time device whose underruns we provoke and count."""

from __future__ import annotations

import logging
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deepkeys.device.encoding import Composition, Note, Track
from deepkeys.device.errors import UserError

pytest.importorskip("fluidsynth", reason="pyfluidsynth (and libfluidsynth3) not installed")
pytest.importorskip("alsaaudio", reason="pyalsaaudio not installed")

from deepkeys.device.adapters.audio import AudioOutput, BlockInfo
from deepkeys.device.adapters.synth import NOTE_ON, Synth
from deepkeys.device.appliance.sequencer import Sequencer

RATE = 48000


def file_pcm(path: Path) -> str:
    """ALSA's file plugin over the null PCM: no config file needed."""
    return f"file:FILE={path},FORMAT=wav"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)


def piece() -> Composition:
    return Composition(
        [
            Track("bass", 33, [Note(40, 0, 3), Note(43, 4, 7), Note(45, 10, 16)], channel=1),
            Track("drums", 0, [Note(36, 0, 1), Note(38, 4, 5), Note(42, 6, 7)], is_drum=True),
        ],
        16,
        150.0,
    )


def test_file_pcm_captures_exactly_what_the_engine_rendered(
    tmp_path: Path, soundfont: Path
) -> None:
    wav = tmp_path / "out.wav"
    synth, seq = Synth(soundfont), Sequencer(RATE, 150.0)
    seq.metronome = True
    seq.play(piece())
    with AudioOutput(synth, seq, device=file_pcm(wav), realtime=False) as out:
        assert out.wait_periods(700)
    stats = out.stats()
    synth.close()
    captured = read_wav(wav)
    assert stats.period == 128 and stats.underruns == 0 and stats.errors == 0
    assert len(captured) == stats.periods_written * stats.period  # whole periods only

    # The same piece rendered here, block by block, with a fresh synth: bit for bit.
    ref_synth, ref_seq = Synth(soundfont), Sequencer(RATE, 150.0)
    ref_seq.metronome = True
    ref_seq.play(piece())
    ref = np.concatenate(
        [
            ref_synth.render(128, ref_seq.events_for_block(s, 128)).copy()
            for s in range(0, len(captured), 128)
        ]
    )
    ref_synth.close()
    assert np.array_equal(captured, ref)
    assert np.abs(captured[: RATE // 2].astype(float)).max() > 1000  # and it is music, not silence


def test_a_live_note_is_in_the_captured_wav_at_its_block(tmp_path: Path, soundfont: Path) -> None:
    wav = tmp_path / "live.wav"
    blocks: list[tuple[int, float, float, list]] = []

    def hook(info: BlockInfo) -> None:
        if info.live:
            blocks.append((info.sample, info.t_start, info.t_rendered, list(info.live)))

    synth = Synth(soundfont, reverb=False)
    with AudioOutput(synth, device=file_pcm(wav), realtime=False, on_block=hook) as out:
        out.wait_periods(50)
        queued = time.monotonic()
        synth.noteon(69, 110)
        assert out.wait_periods(out.periods_written + 400)
    synth.close()
    captured = read_wav(wav).astype(np.float64)

    assert len(blocks) == 1  # the note went into exactly one block
    sample, t_start, t_rendered, live = blocks[0]
    assert [e[:4] for e in live] == [(NOTE_ON, 0, 69, 110)]
    assert t_rendered >= live[0][4] >= queued and t_rendered >= t_start
    assert sample >= 50 * 128 and sample % 128 == 0
    assert np.abs(captured[:sample]).max() <= 2  # silence (dither) before that block

    ref_synth = Synth(soundfont, reverb=False)
    ref = np.concatenate(
        [
            ref_synth.render(128, [(0, NOTE_ON, 0, 69, 110)] if i == 0 else ()).copy()
            for i in range(300)
        ]
    ).astype(np.float64)
    ref_synth.close()
    n = min(len(ref), len(captured) - sample)
    assert n > RATE // 2
    assert np.abs(captured[sample : sample + n] - ref[:n]).max() <= 4  # the note, from that block


def test_null_device_runs_and_counts_periods(soundfont: Path) -> None:
    synth = Synth(soundfont)
    seq = Sequencer(RATE)
    seq.play(piece())
    with AudioOutput(synth, seq, device="null", realtime=False) as out:
        assert out.running
        assert out.wait_periods(300)
    stats = out.stats()
    synth.close()
    assert not out.running
    assert stats.periods_written >= 300 and stats.underruns == 0
    assert stats.last_block_t > 0 and 0 < stats.render_ms_mean <= stats.render_ms_max
    assert stats.render_ms_p99 <= stats.render_ms_max
    assert (stats.period, stats.buffer) == (128, 256)
    assert out.queued_s == pytest.approx(128 / RATE)  # rendered once there is room for one


def test_paced_null_counts_a_late_block_as_an_underrun(soundfont: Path) -> None:
    # `pace` plays the null device like a 2 x 128 frame sound card: 5.3 ms of buffer.
    stalls = {40, 80}

    def stall(info: BlockInfo) -> None:
        if info.sample // info.frames in stalls:
            time.sleep(0.03)

    synth = Synth(soundfont)
    with AudioOutput(synth, device="null", realtime=False, pace=True, on_block=stall) as out:
        assert out.wait_periods(120)
    synth.close()
    assert out.underruns >= len(stalls)


def test_unknown_device_is_a_user_error(soundfont: Path) -> None:
    synth = Synth(soundfont)
    with pytest.raises(UserError, match="deepkeys_no_such_pcm"):
        AudioOutput(synth, device="deepkeys_no_such_pcm").start()
    synth.close()


def test_realtime_priority_is_asked_for_and_logged_once(
    soundfont: Path, caplog: pytest.LogCaptureFixture
) -> None:
    synth = Synth(soundfont)
    with (
        caplog.at_level(logging.INFO, logger="deepkeys.device.adapters.audio"),
        AudioOutput(synth, device="null", pace=True) as out,
    ):
        assert out.wait_periods(20)
    synth.close()
    lines = [r.getMessage() for r in caplog.records if "realtime=" in r.getMessage()]
    assert len(lines) == 1
    if out.rt_granted:  # root, or an rtprio limit: the Pi's systemd unit grants it
        assert lines[0] == "audio realtime=fifo priority=70"
    else:
        assert lines[0].startswith("audio realtime=off reason=")


# --------------------------------------------------------------------------- JACK


@pytest.fixture(scope="module")
def jack_server() -> Iterator[str]:
    """A private JACK server with the dummy backend (the HIL rig's starter): a real-time
    paced device."""
    from deepkeys.hil.jackd import JackUnavailable, start_jackd

    try:
        server = start_jackd(period=128, rate=RATE)
    except JackUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server.name
    finally:
        server.stop()


@pytest.fixture
def on_jack(jack_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # The ALSA jack plugin connects to the server that libjack's environment names.
    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack_server)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    return "plug:jack"


def test_jack_underruns_are_recovered_and_counted(soundfont: Path, on_jack: str) -> None:
    stalls = {100, 200, 300}  # blocks whose render we make 30 ms late

    def stall(info: BlockInfo) -> None:
        if info.sample // info.frames in stalls:
            time.sleep(0.03)

    synth = Synth(soundfont)
    seq = Sequencer(RATE)
    seq.play(piece())
    with AudioOutput(synth, seq, device=on_jack, realtime=False, on_block=stall) as out:
        assert out.wait_periods(450, timeout=20)
    synth.close()
    stats = out.stats()
    # A 30 ms stall drains a buffer of a few ms: every stall is an underrun, and
    # the stream goes on afterwards.
    assert stats.underruns >= len(stalls)
    assert stats.errors == 0
    assert stats.periods_written >= 450


def test_each_block_is_rendered_once_the_device_has_room(soundfont: Path, on_jack: str) -> None:
    """Wait, then render: a block never sits rendered while the device is full, so a
    key queued just before ``before_render`` returns is in that very block."""
    room: list[int] = []  # frames the device could take, before each render
    queued_at: list[int] = []  # the stream position of the block the key was queued for
    keyed: list[int] = []  # the stream position of the block the key was rendered in
    synth = Synth(soundfont)

    def before() -> None:
        room.append(out._pcm.avail())
        if len(room) == 300:
            synth.noteon(64, 100)  # as the daemon's key reader would, at the last moment
            queued_at.append(out.sample)

    def hook(info: BlockInfo) -> None:
        if any(e[:3] == (NOTE_ON, 0, 64) for e in info.live):
            keyed.append(info.sample)

    out = AudioOutput(synth, device=on_jack, realtime=False, before_render=before, on_block=hook)
    with out:
        assert out.wait_periods(400, timeout=20)
    synth.close()
    period = out.stats().period
    settled = room[10:]  # past the start, when the buffer fills
    # Room for a whole period before the renders (an underrun reads as more room). The
    # wait gives up after 4 buffers of silence from a stalled server, so allow one in a
    # hundred; a loop that renders first and then blocks has no room before any of them.
    early = [r for r in settled if r < period]
    assert len(early) <= len(settled) // 100, (early, period)
    assert keyed == queued_at and len(keyed) == 1
