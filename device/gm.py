"""MIDI 1.0 and General MIDI numbers, in one place.

Status bytes are given without their channel, as on the wire (``NOTE_ON | channel``).

>>> hex(NOTE_ON | DRUM_CHANNEL), DRUM_CHANNEL + 1
('0x99', 10)
"""

CHANNELS = 16
DRUM_CHANNEL = 9  # MIDI channel 10, counted from 0: General MIDI's percussion
DRUM_BANK = 128  # the percussion bank in a General MIDI SoundFont

# Channel-message status bytes.
NOTE_OFF = 0x80
NOTE_ON = 0x90
CONTROL = 0xB0
PROGRAM = 0xC0
BEND = 0xE0

# Controller numbers.
SUSTAIN = 64
SOSTENUTO = 66
ALL_SOUND_OFF = 120
ALL_NOTES_OFF = 123
