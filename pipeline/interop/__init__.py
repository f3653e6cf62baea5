"""Other tools' feature files: CMU-MultimodalSDK computational sequences (`csd`), MMSA feature pickles (`mmsa`),
read safely (`restricted_pickle`) and written in their own layouts. Pure file formats: what they mean to the
cache and to training lives in `models/interop/`."""

from __future__ import annotations

from pipeline.errors import SentiFlowError


class InteropError(SentiFlowError, ValueError):
    """A feature file from another tool is missing, malformed, or carries something that is refused."""
