"""The project's own input errors: what the command lines print as one `error: ...` line."""


class UserError(RuntimeError):
    """A bad input the user can fix; main() prints it as one line and exits non-zero."""


class UnsupportedValue(UserError, ValueError):
    """A value outside what the project supports (a bit-width, a level family, a depth): a
    ValueError to code that calls the library, one line at the command line."""
