"""The one exception type that reaches the user as a single line."""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a model, a config).

    The CLI prints ``deepkeys: <message>`` on stderr and exits with status 2,
    never a traceback.

    >>> raise UserError("song.mid: not a MIDI file")
    Traceback (most recent call last):
    ...
    deepkeys.device.errors.UserError: song.mid: not a MIDI file
    """
