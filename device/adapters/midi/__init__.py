"""MIDI in: every keyboard's keys as events, through a backend chosen by name.

``MidiInput`` (in ``input``) is the adapter; ``backends/`` holds the rtmidi and sim
ports it reads. See ``input``'s docstring for the guarantees under garbage and floods.
"""

from deepkeys.device.adapters.midi.backends import BACKENDS
from deepkeys.device.adapters.midi.backends.sim import SIM_PORT, SimPorts
from deepkeys.device.adapters.midi.input import MidiInput, to_event

__all__ = ["BACKENDS", "SIM_PORT", "MidiInput", "SimPorts", "to_event"]
