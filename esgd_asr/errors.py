"""One error type for bad input, and the wrapper that turns it (or an OS error) into a one-line message and exit
code."""
import errno
import functools
import os
import sys
from contextlib import contextmanager

# errors of a write that failed for want of room or a writable place
WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}


class EsgdError(Exception):
    """Bad input or a failed precondition; the message names the file, line or option at fault. `status`: the exit
    status of a command that stops on it."""

    status = 1


def os_error_message(err: OSError) -> str:
    """One line for an OS error: 'cannot write PATH: reason' where writing failed (no space, read-only, permission),
    'cannot read PATH: reason' where reading an existing file was denied, else 'PATH: reason'."""
    reason = err.strerror or str(err)
    path = err.filename
    if path is None:
        return reason
    if err.errno in WRITE_ERRNOS:
        return f"cannot write {path}: {reason}"
    if err.errno in (errno.EACCES, errno.EPERM):
        reading = os.path.exists(path) and not os.access(path, os.R_OK)
        return f"cannot {'read' if reading else 'write'} {path}: {reason}"
    return f"{path}: {reason}"


@contextmanager
def writing(path):
    """Give `path` to an OS error of the block that names no file (as a failed write to an open file does)."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None


def cli_main(func):
    """Decorate a console entry point: EsgdError or OSError -> 'prog: error: msg' on stderr and exit status 1 (an
    EsgdError's own status)."""

    @functools.wraps(func)
    def wrapper(argv=None):
        prog = os.path.basename(sys.argv[0]) or func.__module__
        try:
            return func(argv)
        except EsgdError as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            sys.exit(err.status)
        except OSError as err:
            print(f"{prog}: error: {os_error_message(err)}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
