"""Compressed request bodies: every coding undone, within the body limit, or a clear error."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelserver.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from modelserver.protocol.rest import encoding

BODY = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.5]}]}' * 200
LIMIT = 1 << 20


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("header", "body"),
    [
        (None, BODY),
        ("identity", BODY),
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("GZip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),  # zlib framing, as HTTP's deflate is
        ("deflate", raw_deflate(BODY)),  # bare deflate, as some clients send it
        ("gzip", gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])),  # two members
        ("deflate, gzip", gzip.compress(zlib.compress(BODY))),  # applied in order
        ("gzip", gzip.compress(b"")),
    ],
)
def test_codings_are_undone(header: str | None, body: bytes) -> None:
    want = b"" if body == gzip.compress(b"") else BODY
    assert encoding.decode(body, header, LIMIT) == want


@given(data=st.binary(max_size=5000), coding=st.sampled_from(["gzip", "deflate"]))
def test_round_trip(data: bytes, coding: str) -> None:
    packed = gzip.compress(data) if coding == "gzip" else zlib.compress(data)
    assert encoding.decode(packed, coding, LIMIT) == data


def test_a_bomb_stops_at_the_limit() -> None:
    """64 MiB of zeros from 64 KiB: refused once past the limit, not inflated whole."""
    bomb = gzip.compress(bytes(64 << 20))
    with pytest.raises(PayloadTooLarge, match="inflates past the limit of 1048576"):
        encoding.decode(bomb, "gzip", LIMIT)
    assert encoding.decode(gzip.compress(bytes(LIMIT)), "gzip", LIMIT) == bytes(LIMIT)
    with pytest.raises(PayloadTooLarge):
        encoding.decode(gzip.compress(bytes(LIMIT + 1)), "gzip", LIMIT)


@pytest.mark.parametrize(
    ("header", "body", "error", "words"),
    [
        ("br", BODY, UnsupportedMediaType, "Content-Encoding br is not supported"),
        ("gzip, zstd", BODY, UnsupportedMediaType, "zstd"),
        ("gzip", BODY, InvalidInput, "not valid gzip data"),
        ("gzip", gzip.compress(BODY)[:-20], InvalidInput, "ends in the middle"),
        ("gzip", gzip.compress(BODY) + b"trailing", InvalidInput, "not valid gzip"),
        ("deflate", zlib.compress(BODY) + b"x", InvalidInput, "bytes after its deflate"),
        ("deflate", b"\xff\xff\xff", InvalidInput, "not valid deflate data"),
    ],
)
def test_bad_bodies(header: str, body: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words) as info:
        encoding.decode(body, header, LIMIT)
    assert info.value.http_status == (415 if error is UnsupportedMediaType else 400)
