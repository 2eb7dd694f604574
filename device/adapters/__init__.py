"""The appliance's edges: one module per device it talks to, each owning its own thread.

``midi`` (keyboards, with its backends in ``midi/backends/``), ``panel`` (buttons and
LEDs through gpiozero), ``synth`` (FluidSynth, live), ``audio`` (the ALSA output
thread), ``control`` (the maintainers' Unix socket) and ``notify`` (sd_notify). Each
class can be built from the config with ``from_config`` and used as a context manager.

May import the ground floor (``deepkeys.device.*`` modules) and hardware libraries;
never ``generation``, ``appliance``, ``maintenance`` or ``cli``.
"""
