"""The protobuf codec with a size cap and precise statuses for bad messages.

grpclib sets no limit on message sizes; this codec refuses a request or a reply over
``max_bytes`` with ``RESOURCE_EXHAUSTED`` (gRPC's own default cap is 4 MiB, which is
what Google's clients accept by default), and a request that is not valid protobuf
with ``INVALID_ARGUMENT`` instead of an internal error.

Limit of the cap: grpclib reads a whole message before decoding it, so an oversized
request is refused after it arrived, not while it streams in.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "CappedCodec"]

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The largest request or reply, in bytes (gRPC's usual default)."""


class CappedCodec(ProtoCodec):
    """``ProtoCodec`` refusing messages over ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_bytes < 1024:
            raise ValueError("max_message_bytes must be at least 1024")
        self.max_bytes = max_bytes

    def encode(self, message: Any, message_type: Any) -> bytes:
        data = super().encode(message, message_type)
        if len(data) > self.max_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"the reply is {len(data)} bytes, over the cap of {self.max_bytes} bytes",
            )
        return data

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self.max_bytes:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"the request is {len(data)} bytes, over the cap of {self.max_bytes} bytes",
            )
        try:
            return super().decode(data, message_type)
        except DecodeError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, f"malformed request: {exc}") from exc
