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


EMPTY_GZIP = gzip.compress(b"", mtime=0)

CODINGS = {
    "none": (None, BODY, BODY),
    "identity": ("identity", BODY, BODY),
    "gzip": ("gzip", gzip.compress(BODY, mtime=0), BODY),
    "x-gzip": ("x-gzip", gzip.compress(BODY, mtime=0), BODY),
    "GZip": ("GZip", gzip.compress(BODY, mtime=0), BODY),
    "deflate (zlib framing, HTTP's)": ("deflate", zlib.compress(BODY), BODY),
    "deflate (bare, as some clients send)": ("deflate", raw_deflate(BODY), BODY),
    "two gzip members": (
        "gzip",
        gzip.compress(BODY[:100], mtime=0) + gzip.compress(BODY[100:], mtime=0),
        BODY,
    ),
    "deflate then gzip": ("deflate, gzip", gzip.compress(zlib.compress(BODY), mtime=0), BODY),
    "empty": ("gzip", EMPTY_GZIP, b""),
}


@pytest.mark.parametrize("case", list(CODINGS))
def test_codings_are_undone(case: str) -> None:
    header, body, want = CODINGS[case]
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


BAD = {
    "unknown coding": ("br", BODY, UnsupportedMediaType, "Content-Encoding br is not supported"),
    "one unknown of two": ("gzip, zstd", BODY, UnsupportedMediaType, "zstd"),
    "not gzip": ("gzip", BODY, InvalidInput, "not valid gzip data"),
    "truncated": ("gzip", gzip.compress(BODY, mtime=0)[:-20], InvalidInput, "ends in the middle"),
    "trailing bytes": ("gzip", gzip.compress(BODY, mtime=0) + b"x" * 9, InvalidInput, "valid gzip"),
    "after deflate": ("deflate", zlib.compress(BODY) + b"x", InvalidInput, "after its deflate"),
    "not deflate": ("deflate", b"\xff\xff\xff", InvalidInput, "not valid deflate data"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_bodies(case: str) -> None:
    header, body, error, words = BAD[case]
    with pytest.raises(error, match=words) as info:
        encoding.decode(body, header, LIMIT)
    assert info.value.http_status == (415 if error is UnsupportedMediaType else 400)
