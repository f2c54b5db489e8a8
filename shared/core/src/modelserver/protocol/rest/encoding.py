"""Request bodies sent compressed: ``Content-Encoding: gzip`` or ``deflate``.

tritonclient compresses requests when asked (``request_compression_algorithm``)
and so does ``curl --data-binary @body.gz -H 'Content-Encoding: gzip'``. The
body is inflated before any codec sees it, never past ``--max_body_size``:
the decompressor is fed a bounded output at a time, so a small bomb that
would inflate to gigabytes is a 413 after at most the limit's worth of
memory. An encoding this server cannot read is a 415; a body that is not
what its encoding says is a 400. A body without the header costs nothing.
"""

from __future__ import annotations

import zlib

from ...errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

#: zlib window settings: gzip framing; zlib framing (HTTP's "deflate"); bare deflate.
_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW = -zlib.MAX_WBITS
#: Output taken from the decompressor per call.
_CHUNK = 1 << 20

ENCODINGS = ("gzip", "deflate", "identity")


def encodings(header: str | None) -> list[str]:
    """The codings of a Content-Encoding header, in the order they were applied."""
    if not header:
        return []
    names = [part.strip().lower() for part in header.split(",") if part.strip()]
    unknown = [n for n in names if n not in ENCODINGS and n != "x-gzip"]
    if unknown:
        raise UnsupportedMediaType(
            f"Content-Encoding {', '.join(unknown)} is not supported; "
            f"send the body as is or with {' or '.join(ENCODINGS[:2])}"
        )
    return [n for n in names if n != "identity"]


def _inflate(body: bytes, wbits: int, name: str, limit: int) -> bytes:
    """One coding undone, never holding more than ``limit`` bytes of output."""
    out: list[bytes] = []
    total = 0
    data = body
    while data:
        inflater = zlib.decompressobj(wbits)
        while True:
            # Called again with no input, it gives the output it still holds.
            chunk = inflater.decompress(data, min(_CHUNK, limit - total + 1))
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(
                    f"Request body inflates past the limit of {limit} bytes ({name})"
                )
            out.append(chunk)
            data = inflater.unconsumed_tail
            if inflater.eof or not (chunk or data):
                break
        if not inflater.eof:
            raise InvalidInput(f"Request body ends in the middle of its {name} data")
        # gzip allows several members one after another; anything else is an error.
        data = inflater.unused_data
        if data and wbits != _GZIP:
            raise InvalidInput(f"Request body has bytes after its {name} data")
    return b"".join(out)


def decode(body: bytes, header: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding undone (``header`` as sent; None: none)."""
    codings = encodings(header)
    for name in reversed(codings):
        if name in ("gzip", "x-gzip"):
            body = _inflate_checked(body, _GZIP, "gzip", limit)
            continue
        # HTTP's deflate is zlib-framed; some clients send bare deflate data under it.
        try:
            body = _inflate(body, _ZLIB, "deflate", limit)
        except zlib.error:
            body = _inflate_checked(body, _RAW, "deflate", limit)
    return body


def _inflate_checked(body: bytes, wbits: int, name: str, limit: int) -> bytes:
    try:
        return _inflate(body, wbits, name, limit)
    except zlib.error as exc:
        raise InvalidInput(f"Request body is not valid {name} data: {exc}") from None
