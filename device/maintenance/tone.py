"""``deepkeys tone``: a test chord through the real audio path (FluidSynth -> our audio
thread -> the configured ALSA device), so a maintainer hears that sound works.

    >>> stats = play_tone(load_config(), seconds=1.0)        # doctest: +SKIP
    >>> stats.periods_written, stats.underruns               # doctest: +SKIP
    (375, 0)
"""

from __future__ import annotations

from deepkeys.device.adapters.audio import AudioOutput, AudioStats
from deepkeys.device.config import Config

CHORD = (60, 64, 67, 72)  # C major, middle C up: easy to recognise by ear
VELOCITY = 100
RELEASE_S = 0.5


def play_tone(
    cfg: Config, device: str | None = None, seconds: float = 1.5, chord: tuple[int, ...] = CHORD
) -> AudioStats:
    """Hold ``chord`` for ``seconds`` on the configured (or given) device, then release it."""
    from deepkeys.device.adapters.synth import Synth

    rate = cfg.audio.rate
    synth = Synth.from_config(cfg)
    try:
        # Paced where the device never blocks, as the daemon does: else the chord is a blink.
        out = AudioOutput.from_config(cfg, synth, device=device)
        out.start()  # a device that will not open is a UserError here
        try:
            for note in chord:
                synth.noteon(note, VELOCITY)
            held = round(seconds * rate / out.period)
            out.wait_periods(held, timeout=seconds + 10)
            for note in chord:
                synth.noteoff(note)
            out.wait_periods(held + round(RELEASE_S * rate / out.period), timeout=RELEASE_S + 10)
        finally:
            out.stop()  # a file: PCM is complete once closed
        return out.stats()
    finally:
        synth.close()
