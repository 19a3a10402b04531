"""Shared plumbing of the `python -m export` commands."""

import contextlib
import os
import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """A command-line problem reported as one line with exit code 2."""


@contextlib.contextmanager
def quiet_native_stderr(enabled=True):
    """Send what native code writes to stderr to /dev/null, for a while.

    TensorFlow's C++ runtime prints several lines (oneDNN, CUDA, absl
    notices) to file descriptor 2 when it loads, before
    `TF_CPP_MIN_LOG_LEVEL` takes effect, and the converters print their
    own. A command's errors must stay one line, so within this context fd 2
    points at /dev/null, and the yielded stream, a copy of the original
    stderr, takes the command's own messages and log records.
    """
    if not enabled:
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    stream = os.fdopen(os.dup(saved), "w", buffering=1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield stream
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        stream.flush()
        stream.close()


def print_error(prog, message, stream=None):
    """Print `prog: error: message` as a single line."""
    line = " ".join(str(message).split())
    print(f"{prog}: error: {line}", file=stream or sys.stderr)
