"""The one exception type for bad input: its message is the one line the user sees."""


class InputError(Exception):
    """Bad input (a file, a line in it, or a config key); the message names where."""
