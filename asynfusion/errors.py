"""The one exception type a user sees: its message is printed as one line, never a traceback."""


class InputError(Exception):
    """Bad input from the user (file, audio, checkpoint, option): the message names the problem."""
