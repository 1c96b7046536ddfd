"""FMA Python SDK: `Developer` creates and steers experiments, `Client` trains in them.

It speaks HTTP only (requests, numpy, safetensors) and never imports the server package.
"""

from fma_client._http import RetryPolicy
from fma_client._version import __version__
from fma_client.client import Client
from fma_client.developer import Developer
from fma_client.errors import (
    BadRequest,
    Conflict,
    EnrollmentExhausted,
    ExperimentEnded,
    ExperimentFailed,
    FmaConnectionError,
    FmaError,
    FmaHTTPError,
    Forbidden,
    Gone,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    RoundFailed,
    ServerError,
    Timeout,
    TooManyRequests,
    TrainResultError,
    Unauthorized,
    Unprocessable,
    UpdateRejected,
)

__all__ = [
    "BadRequest",
    "Client",
    "Conflict",
    "Developer",
    "EnrollmentExhausted",
    "ExperimentEnded",
    "ExperimentFailed",
    "FmaConnectionError",
    "FmaError",
    "FmaHTTPError",
    "Forbidden",
    "Gone",
    "IntegrityError",
    "NotFound",
    "PayloadTooLarge",
    "RetryPolicy",
    "RoundFailed",
    "ServerError",
    "Timeout",
    "TooManyRequests",
    "TrainResultError",
    "Unauthorized",
    "Unprocessable",
    "UpdateRejected",
    "__version__",
]
