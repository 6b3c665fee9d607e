"""The one exception type for bad user input."""


class UserError(Exception):
    """Bad input from the user (file, record, flag).

    Command-line entry points print it as one line and exit with status 2; library callers can
    catch it. The message names the file, the record and the allowed values.
    """
