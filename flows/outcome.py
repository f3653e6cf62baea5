"""How a flow run ends where its user looks: the final state's message (one line, shown by the UI and by
`prefect flow-run inspect`, and in `--watch` through the engine's "Finished in state ..." log line) says what
the run did, and a run that completed with failed files says how many and why in that message and in a warning.
An expected failure (a `SentiFlowError`) is logged as its one-line message, without a traceback; any other
exception is a bug and keeps its traceback (`OneLineExpectedFailures`: every flow module calls
`quiet_expected_failures()` when imported).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.errors import SentiFlowError

SHOWN_REASONS = 3   # failed files named in a message; the rest are in the run's artifacts and failures.jsonl


def one_line(text: str, limit: int = 600) -> str:
    """`text` on one line (runs of whitespace become one space), cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def failure_note(failed: Sequence[Mapping[str, Any]], where: str) -> str:
    """'N file(s) failed (name: reason; ...); see WHERE' for rows with `file` and `reason` keys."""
    shown = "; ".join(f"{Path(str(r.get('file', ''))).name}: {r.get('reason') or 'no reason given'}"
                      for r in failed[:SHOWN_REASONS])
    more = f"; and {len(failed) - SHOWN_REASONS} more" if len(failed) > SHOWN_REASONS else ""
    return f"{len(failed)} file(s) failed ({shown}{more}); see {where}"


def completed(summary: str, failed: Sequence[Mapping[str, Any]], where: str, data: Any) -> Any:
    """The flow's final Completed state carrying `data`: its message is `summary`, plus the failure note when
    files failed (then also logged as a warning)."""
    from prefect.logging import get_run_logger
    from prefect.states import Completed

    message = summary
    if failed:
        note = failure_note(failed, where)
        get_run_logger().warning("completed with failures: %s", one_line(note))
        message = f"{summary}; {note}"
    return Completed(message=one_line(message), data=data)


class OneLineExpectedFailures(logging.Filter):
    """Drops the traceback of flow-run log records about a SentiFlowError: its message says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; one that carries a SentiFlowError loses its traceback and gains the error's text."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, SentiFlowError):
            text = f"{type(exc).__name__}: {one_line(str(exc))}"
            message = record.getMessage()
            record.msg, record.args = (message if str(exc) in message else f"{message}: {text}"), None
            record.exc_info, record.exc_text = None, None
        return True


def quiet_expected_failures(logger_name: str = "prefect.flow_runs") -> None:
    """Install `OneLineExpectedFailures` on the flow-run logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, OneLineExpectedFailures) for f in logger.filters):
        logger.addFilter(OneLineExpectedFailures())
