"""The decoding budget: what a file says it holds is checked before any decoder allocates it.

Decoders trust their input: pydicom inflates a deflated file whole (even to read its header), its RLE decoder
has no output bound, and a JPEG 2000 decoder allocates what the codestream declares, whatever the DICOM header
says. A small hostile file can thus ask for gigabytes. Each check here reads only headers and control bytes.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

#: decoded bytes one unit may take, as float32 (the form every unit is decoded to)
MAX_UNIT_BYTES = 1 << 30
DEFLATED = b"1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


class BudgetError(ValueError):
    """A file declares (or would decode to) more than the budget, or contradicts its own header."""


def check_bytes(n_bytes: int, what: str) -> None:
    if n_bytes > MAX_UNIT_BYTES:
        raise BudgetError(f"{what} exceeds the limit: it would decode to {n_bytes / 2**20:.0f} MB "
                          f"(at most {MAX_UNIT_BYTES / 2**20:.0f} MB a unit)")


def check_deflated(path: str) -> None:
    """A deflated-transfer-syntax file is inflated, without keeping the output, up to the budget."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
        if DEFLATED not in head:
            return
        end = _file_meta_end(head)
        if end is None:
            return  # not a well-formed part-10 file: pydicom reports it
        fh.seek(end)
        inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := fh.read(1 << 20):
            while chunk:
                try:
                    total += len(inflater.decompress(chunk, 1 << 24))
                except zlib.error as exc:
                    raise BudgetError(f"corrupt deflated data ({exc})") from None
                check_bytes(total, "the deflated dataset")
                chunk = inflater.unconsumed_tail


def _file_meta_end(head: bytes) -> int | None:
    """Offset after the file meta group (preamble, 'DICM', group 2 whose length the first element gives)."""
    if head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00" or head[136:138] != b"UL":
        return None
    (length,) = struct.unpack("<I", head[140:144])
    return 144 + length


def check_frames(frames, transfer_syntax: str, rows: int, cols: int, samples: int) -> None:
    """Each compressed frame's own declared size must be the header's (RLE: its decoded segment lengths)."""
    for i, frame in enumerate(frames):
        if transfer_syntax == RLE:
            _check_rle(frame, rows * cols)
            continue
        shape = declared_shape(frame)
        if shape is None:
            raise BudgetError(f"frame {i}: no image size found in its compressed data")
        if shape != (rows, cols, samples):
            raise BudgetError(f"frame {i} declares {shape[0]}x{shape[1]}x{shape[2]} in its compressed data, "
                              f"the header {rows}x{cols}x{samples}")


def declared_shape(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, cols, components) a JPEG 2000 (SIZ marker) or JPEG / JPEG-LS (SOF marker) frame declares."""
    siz = frame.find(b"\xff\x4f\xff\x51", 0, 4096)
    if siz >= 0 and len(frame) >= siz + 42:
        x, y, x0, y0 = struct.unpack(">4I", frame[siz + 8 : siz + 24])
        (c,) = struct.unpack(">H", frame[siz + 40 : siz + 42])
        return y - y0, x - x0, c
    if frame[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        (length,) = struct.unpack(">H", frame[pos + 2 : pos + 4])
        if marker in _JPEG_SOF and pos + 10 <= len(frame):
            y, x = struct.unpack(">HH", frame[pos + 5 : pos + 9])
            return y, x, frame[pos + 9]
        pos += 2 + length
    return None


def _check_rle(frame: bytes, segment_size: int) -> None:
    """RLE: every segment must decode to at most rows x cols bytes (control bytes counted, nothing written)."""
    if len(frame) < 64:
        raise BudgetError("RLE frame shorter than its 64-byte header")
    header = np.frombuffer(frame[:64], "<u4")
    n = int(header[0])
    if not 1 <= n <= 15:
        raise BudgetError(f"RLE frame declares {n} segments (1 to 15 allowed)")
    offsets = [int(o) for o in header[1 : n + 1]] + [len(frame)]
    for start, end in zip(offsets, offsets[1:]):
        if not 64 <= start <= end <= len(frame):
            raise BudgetError("RLE segment offsets point outside the frame")
        if _rle_decoded_length(frame[start:end], segment_size) > segment_size:
            raise BudgetError(f"an RLE segment decodes to more than its {segment_size} declared bytes")


def _rle_decoded_length(segment: bytes, limit: int) -> int:
    """PackBits length of ``segment``, stopping once past ``limit``."""
    n = pos = 0
    while pos < len(segment) and n <= limit:
        control = segment[pos]
        if control < 128:  # literal run (a run cut by the segment's end copies what is there)
            n, pos = n + min(control + 1, len(segment) - pos - 1), pos + control + 2
        elif control > 128:  # replicate run
            n, pos = n + (257 - control if pos + 1 < len(segment) else 0), pos + 2
        else:
            pos += 1
    return n
