"""The appliance itself: what happens between the keys, the panel and the speaker.

``state`` (the pure state machine: events in, actions out, no I/O), ``take`` (a
recorded melody, quantized), ``sequencer`` (loop playback in samples), ``keypath``
(MIDI reader -> synth -> audio thread, shared with ``bench latency``), ``daemon``
(wires the adapters to the state machine and carries out its actions) and ``sim``
(the same daemon on a desktop, with a terminal for a panel).

May import the ground floor, ``adapters`` and ``generation``; never ``maintenance``
or ``cli``.
"""
