"""One error type for bad input, and the wrapper that turns it into a one-line message and exit code."""
import functools
import os
import sys


class EsgdError(Exception):
    """Bad input or a failed precondition; the message names the file, line or option at fault."""


def cli_main(func):
    """Decorate a console entry point: EsgdError -> 'prog: error: msg' on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(argv=None):
        prog = os.path.basename(sys.argv[0]) or func.__module__
        try:
            return func(argv)
        except EsgdError as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
