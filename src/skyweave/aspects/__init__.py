"""Aspects: code that wraps activities before and after they run (see ``skyweave.aspects.base``)."""

from skyweave.aspects.base import (
    Aspect,
    AspectChain,
    AspectError,
    AspectOutcome,
    AspectSettings,
    load_aspect,
    usage_from,
)
from skyweave.aspects.builtin import (
    InputValidationAspect,
    InvalidInput,
    LogCaptureAspect,
    TimingAspect,
)

__all__ = [
    "Aspect",
    "AspectChain",
    "AspectError",
    "AspectOutcome",
    "AspectSettings",
    "InputValidationAspect",
    "InvalidInput",
    "LogCaptureAspect",
    "TimingAspect",
    "load_aspect",
    "usage_from",
]
