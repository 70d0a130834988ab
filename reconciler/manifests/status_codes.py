"""The status names and codes Istio's HTTP route fields accept, shared by validation and translation.

`fault.abort.grpcStatus` names a gRPC status; `retries.retryOn` may list HTTP status codes among its policies.
"""

from __future__ import annotations

# gRPC status names by their numeric code (grpc/codes), in code order: the position is the code Envoy wants.
GRPC_STATUS_CODES: dict[str, int] = {
    name: code
    for code, name in enumerate(
        (
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        )
    )
}

# The status codes Go's net/http knows (http.StatusText != ""): istiod takes these in retryOn as
# retriable status codes. Listed rather than taken from Python's HTTPStatus, which grows with Python releases.
KNOWN_HTTP_STATUS_CODES = frozenset(
    {*range(100, 104), *range(200, 209), 226, *range(300, 306), 307, 308, *range(400, 419), *range(421, 427)}
    | {428, 429, 431, 451, *range(500, 509), 510, 511}
)


def is_known_http_status(token: str) -> bool:
    """Whether a retryOn token is an HTTP status code istiod recognises (rather than a policy name)."""
    return token.isascii() and token.isdigit() and int(token) in KNOWN_HTTP_STATUS_CODES
