"""Protobuf's wire format, read and written directly for messages of many megabytes (pure).

Reading: the top-level fields of a serialized message without parsing it; the incremental preflight compares
RouteConfigurations virtual host by virtual host. Writing: a message as the concatenation of its fields'
encodings; translation assembles a route configuration from cached virtual hosts and the ADS server wraps
resources in a DiscoveryResponse, each copying bytes once instead of building and re-serializing messages.
Fields written in field-number order are byte for byte protobuf's deterministic serialization.
"""

from __future__ import annotations

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def fields(body: bytes) -> list[tuple[int, bytes]]:
    """(field number, the field's whole encoding: tag, length if any, payload) for each field, in wire order."""
    out: list[tuple[int, bytes]] = []
    position = 0
    while position < len(body):
        start = position
        tag, position = _varint(body, position)
        kind = tag & 7
        if kind == VARINT:
            _, position = _varint(body, position)
        elif kind == FIXED64:
            position += 8
        elif kind == LENGTH_DELIMITED:
            length, position = _varint(body, position)
            position += length
        elif kind == FIXED32:
            position += 4
        else:  # groups (3, 4) are proto2-only; no Envoy API message has them
            raise ValueError(f"unsupported wire type {kind} at byte {start}")
        if position > len(body):
            raise ValueError(f"field at byte {start} runs past the end of the message")
        out.append((tag >> 3, body[start:position]))
    return out


def payload(entry: bytes) -> bytes:
    """The payload of one length-delimited field encoding (an embedded message, a string or bytes)."""
    _, position = _varint(entry, 0)
    _, position = _varint(entry, position)
    return entry[position:]


def length_delimited(number: int, data: bytes) -> bytes:
    """The encoding of field `number` holding `data` (an embedded message, a string or bytes)."""
    return field_header(number, len(data)) + data


def field_header(number: int, length: int) -> bytes:
    """What precedes `length` bytes of payload in field `number` (length-delimited): join, do not copy."""
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(length)


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
