"""The key path: MIDI reader -> synth -> audio thread, wired once for the daemon and the bench.

Sound never waits for the main loop. Each key, pedal and bend goes to the synth's
queue on the MIDI reader's thread as it is read (``on_event``), and the audio thread
reads the keyboards once more just before each render (``drain_now``), so a key
that arrives while a block is due still makes it. The same events also go to the
main loop's queue, for the state machine. ``deepkeys bench latency`` measures this
class, so the bench measures the wiring that ships.

    >>> keys = KeyPath(load_config(), queue.Queue(maxsize=1024))     # doctest: +SKIP
    >>> keys.start_audio(); keys.start_midi()                         # doctest: +SKIP
    >>> keys.midi.send([0x90, 60, 100])        # heard in the next block  # doctest: +SKIP
    >>> keys.close()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from deepkeys.device.adapters.audio import AudioOutput, BlockInfo
from deepkeys.device.adapters.midi import MidiInput
from deepkeys.device.adapters.synth import Synth
from deepkeys.device.appliance.sequencer import Sequencer
from deepkeys.device.config import Config

# Head room in the main loop's queue for what is not a key (ticks, buttons, reloads).
QUEUE_HEADROOM = 64


class KeyPath:
    """The synth, the sequencer and the audio thread, then the MIDI input that feeds them.

    ``is_transport(event)`` marks events that are commands, not sound (the keyboard's
    transport CCs): they reach the main loop only. ``on_block(info)`` runs on the
    audio thread after each block and must only append.
    """

    def __init__(
        self,
        cfg: Config,
        events: queue.Queue,
        *,
        is_transport: Callable[[Any], bool] = lambda event: False,
        on_block: Callable[[BlockInfo], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.events = events
        self.is_transport = is_transport
        self.on_block = on_block
        self.synth: Synth | None = None
        self.seq: Sequencer | None = None
        self.audio: AudioOutput | None = None
        self.midi: MidiInput | None = None

    def start_audio(self) -> None:
        """The synth and the sequencer, playing through the configured ALSA device."""
        self.synth = Synth.from_config(self.cfg)
        self.seq = Sequencer(rate=self.cfg.audio.rate, tempo_bpm=self.cfg.player.tempo_bpm)
        self.audio = AudioOutput.from_config(
            self.cfg, self.synth, self.seq, on_block=self.on_block, before_render=self._take_keys
        )
        self.audio.start()

    def start_midi(self) -> None:
        """The keyboards: every key to the synth at once, and to the main loop's queue."""
        limit = max(self.events.maxsize - QUEUE_HEADROOM, 1) if self.events.maxsize else 1024
        self.midi = MidiInput.from_config(
            self.cfg, self.events, queue_limit=limit, on_event=self._sound
        )

    def _sound(self, event: Any) -> None:
        """MIDI reader thread: play a key, pedal or bend now (the synth only queues it)."""
        if self.synth is not None and not self.is_transport(event):
            self.synth.handle(event)

    def _take_keys(self) -> None:
        """Audio thread, before each render: the keys that have come since the reader looked."""
        if self.midi is not None:
            self.midi.drain_now()

    def silence(self, release_s: float = 0.5) -> None:
        """Stop the sequencer, release every note and let the release reach the speaker."""
        if self.seq is not None:
            self.seq.stop()
        if self.synth is not None:
            self.synth.all_notes_off()
        if self.audio is not None and self.audio.running:
            self.audio.wait_periods(self.audio.periods_written + 4, timeout=release_s)

    def close_input(self) -> None:
        """Stop reading the keyboards (first, so nothing new starts while sound stops)."""
        if self.midi is not None:
            self.midi.close()

    def close_output(self) -> None:
        """Stop the audio thread and free the synth. Safe twice."""
        if self.audio is not None:
            self.audio.stop()
        if self.synth is not None:
            self.synth.close()

    def close(self) -> None:
        self.close_input()
        self.silence()
        self.close_output()
