"""The base of every error a user can fix: bad input files, flags, model specs, settings.

The CLI prints these as one `opct: error: ...` message (exit status 2), without a traceback;
anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    pass


class UsageError(UserError):
    """Flags that do not fit together."""
