"""Errors a user can act on. The CLI prints them as one line and exits with status 2, without a traceback."""


class JanusError(Exception):
    """A problem with the user's input, options or files; the message names the file, line or option."""


class DataError(JanusError):
    """Bad input data: the message names the file and, where there is one, the line."""
