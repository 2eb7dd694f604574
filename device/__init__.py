"""deepkeys on the device: the appliance's firmware, in rooms that follow its data path.

The ground floor (this folder's modules) is what every room shares and may import:
``errors``, ``atomic`` (whole files or none), ``log`` (key=value lines), ``gm``
(General MIDI numbers), ``encoding`` (notes, tracks, melodies on the 16th grid),
``timeline`` (a composition as events in beats), ``events`` (the daemon's messages),
``worker`` (a thread's lifetime), ``quiet`` (C libraries' stderr lines held back),
``soundfont``, ``resources`` and ``config``. It imports nothing from the rooms and
nothing that needs hardware.

The rooms, each allowed the ground floor and the rooms listed before it:

- ``adapters/``: the edges, each owning its thread or file descriptor: MIDI input
  and its backends, the panel, the synth, audio, the control socket, sd_notify;
- ``generation/``: melody to composition: the model card and library, the int8
  generator, decoding, arranging, MIDI files, offline rendering, the piano roll;
- ``appliance/``: the pure state machine, the take, the sequencer, the key path,
  the daemon that wires them, and the desktop simulator;
- ``maintenance/``: what a maintainer runs over SSH: doctor, install, the model
  store, deploy, logs, tone, buttons, bench;
- ``cli/``: the ``deepkeys`` entry point, one module per command group.

``adapters`` and ``generation`` never import each other; the device never imports
TensorFlow.
"""
