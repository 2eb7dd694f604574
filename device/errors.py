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


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type name if it has none).

    >>> first_line(ValueError("bad shape\\n  details")), first_line(KeyError())
    ('bad shape', 'KeyError')
    """
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """An exception's whole message on one line, whitespace collapsed (for key=value logs).

    >>> one_line(OSError("disk\\n full"))
    'disk full'
    """
    return " ".join(str(exc).split()) or type(exc).__name__
