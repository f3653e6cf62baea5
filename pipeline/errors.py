"""The base of every error SentiFlow raises on purpose: its message says what is wrong and what to do.

Front doors (the CLI, the flows) catch `SentiFlowError` once and print its message; anything else is a bug
and keeps its traceback. Each module defines its specific errors as subclasses (ConfigError, CacheError,
MediaError, LabelError, CheckpointError, ...).
"""

from __future__ import annotations


class SentiFlowError(Exception):
    """An expected failure with a message meant for the user (bad input, bad setting, missing weights)."""
