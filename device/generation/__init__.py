"""From a melody to a finished composition, with no hardware and no threads.

``card`` (what a model is), ``library`` (which genres are installed where),
``generator`` (the int8 model on LiteRT), ``decode`` (its outputs to notes),
``arrange`` (notes to tracks with programs and accents), ``midifile`` (MIDI files in
and out), ``render`` (a WAV, offline), ``pianoroll`` (a PNG) and ``files`` (a
composition's .mid, .wav and .png, written all or nothing).

May import the ground floor, numpy, mido, LiteRT and FluidSynth; never ``adapters``,
``appliance``, ``maintenance`` or ``cli``, and never TensorFlow.
"""
