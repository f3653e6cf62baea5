"""The base of every error SentiFlow raises on purpose: its message says what is wrong and what to do.

Front doors (the CLI, the flows) catch `SentiFlowError` once and print its message; anything else is a bug
and keeps its traceback. Each module defines its specific errors as subclasses (ConfigError, CacheError,
MediaError, LabelError, CheckpointError, ...).
"""

from __future__ import annotations

import errno


class SentiFlowError(Exception):
    """An expected failure with a message meant for the user (bad input, bad setting, missing weights)."""


_OS_REASONS = {
    "ENOENT": "no such file",
    "ENAMETOOLONG": "name too long",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "ELOOP": "symlink loop (too many levels of symbolic links)",
    "ENOTDIR": "a part of the path is not a directory",
    "ENOSPC": "No space left on device",
    "EDQUOT": "disk quota exceeded",
    "EROFS": "read-only file system",
    "EIO": "input/output error",
}


def os_reason(exc: OSError) -> str:
    """An operating-system error in words: 'no such file', 'name too long', 'No space left on device', ..."""
    name = errno.errorcode.get(exc.errno or 0, "")
    if name in _OS_REASONS:
        return _OS_REASONS[name]
    return exc.strerror or str(exc) or type(exc).__name__
