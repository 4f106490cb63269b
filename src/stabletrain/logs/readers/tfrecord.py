"""TFRecord framing and a minimal protobuf decoder for TensorBoard ``Event`` scalars.

A TFRecord is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``.
The Event proto fields read here (tensorboard/compat/proto/event.proto, summary.proto,
tensor.proto): Event{1 wall_time double, 2 step int64, 5 summary}; Summary{1 value*};
Value{1 tag, 2 simple_value float, 8 tensor, 9 metadata}; TensorProto{1 dtype, 4 tensor_content,
5 float_val, 6 double_val, 7 int_val, 10 int64_val}; SummaryMetadata{1 plugin_data{1 plugin_name}}.

Hand-rolled because it is several times faster than building message objects for every event;
everything not listed is skipped by wire type, so images, histograms and graphs cost one slice.
The CRC of each length header is checked (cheap, 8 bytes); data CRCs only on request
(pure-Python crc32c over megabytes is slow) — a bad length CRC or an impossible length ends the
read with a note.
"""

from __future__ import annotations

import re
import struct

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    t = _TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord around ``data`` (used by tests and the benchmark to write event files)."""
    header = _U64.pack(len(data))
    return header + _U32.pack(masked_crc32c(header)) + data + _U32.pack(masked_crc32c(data))


def looks_like_tfrecord(head: bytes) -> bool:
    """True when the first 12 bytes are a TFRecord length header with a valid CRC."""
    return len(head) >= 12 and _U32.unpack_from(head, 8)[0] == masked_crc32c(head[:8])


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _skip(buf: bytes, pos: int, wire: int) -> int:
    if wire == 0:
        return _varint(buf, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 2:
        n, pos = _varint(buf, pos)
        return pos + n
    if wire == 5:
        return pos + 4
    raise ValueError(f"unsupported protobuf wire type {wire}")


# TensorFlow DataType codes for scalar tensors
_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_INT64, _DT_HALF = 1, 2, 3, 9, 19


def _tensor_scalar(buf: bytes, pos: int, end: int) -> float | None:
    """The value of a one-element numeric TensorProto, else None (text, histograms...)."""
    dtype = 0
    content = b""
    vals: list[float] = []
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 0:
            dtype, pos = _varint(buf, pos)
        elif field == 4 and wire == 2:
            n, pos = _varint(buf, pos)
            content = buf[pos : pos + n]
            pos += n
        elif field == 5:  # float_val: packed or not
            if wire == 2:
                n, pos = _varint(buf, pos)
                vals.extend(struct.unpack_from(f"<{n // 4}f", buf, pos))
                pos += n
            else:
                vals.append(_F32.unpack_from(buf, pos)[0])
                pos += 4
        elif field == 6:  # double_val
            if wire == 2:
                n, pos = _varint(buf, pos)
                vals.extend(struct.unpack_from(f"<{n // 8}d", buf, pos))
                pos += n
            else:
                vals.append(_F64.unpack_from(buf, pos)[0])
                pos += 8
        elif field in (7, 10) and wire == 0:  # int_val / int64_val, unpacked
            v, pos = _varint(buf, pos)
            vals.append(float(v))
        elif field in (7, 10, 13) and wire == 2:  # packed ints (13 = half_val bits)
            n, pos = _varint(buf, pos)
            stop = pos + n
            while pos < stop:
                v, pos = _varint(buf, pos)
                vals.append(float(v) if field != 13 else _half(v))
        else:
            pos = _skip(buf, pos, wire)
    if content:
        size = {_DT_FLOAT: 4, _DT_DOUBLE: 8, _DT_INT32: 4, _DT_INT64: 8, _DT_HALF: 2}.get(dtype)
        if size is None or len(content) != size:
            return None
        code = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_INT32: "<i", _DT_INT64: "<q", _DT_HALF: "<e"}
        return float(struct.unpack(code[dtype], content)[0])
    if len(vals) == 1 and dtype in (_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_INT64, _DT_HALF, 0):
        return vals[0]
    return None


def _half(bits: int) -> float:
    return float(struct.unpack("<e", struct.pack("<H", bits & 0xFFFF))[0])


def _plugin_name(buf: bytes, pos: int, end: int) -> str:
    while pos < end:
        key, pos = _varint(buf, pos)
        if key == 0x0A:  # plugin_data
            n, pos = _varint(buf, pos)
            stop = pos + n
            while pos < stop:
                k2, pos = _varint(buf, pos)
                if k2 == 0x0A:
                    m, pos = _varint(buf, pos)
                    return buf[pos : pos + m].decode("utf-8", "replace")
                pos = _skip(buf, pos, k2 & 7)
            return ""
        pos = _skip(buf, pos, key & 7)
    return ""


#: one scalar: (tag, step, value, wall_time)
Scalar = tuple[str, int, float, float]


def parse_event(buf: bytes, pos: int, end: int, out: list[Scalar], plugins: dict[str, str]) -> None:
    """Append the scalars of the Event in ``buf[pos:end]`` to ``out``."""
    wall = 0.0
    step = 0
    summary: list[tuple[int, int]] = []
    while pos < end:
        key = buf[pos]
        pos += 1
        if key == 0x09:
            wall = _F64.unpack_from(buf, pos)[0]
            pos += 8
        elif key == 0x10:
            step, pos = _varint(buf, pos)
            if step >= 1 << 63:
                step -= 1 << 64
        elif key == 0x2A:
            n, pos = _varint(buf, pos)
            summary.append((pos, pos + n))
            pos += n
        else:
            if key >= 0x80:
                key, pos = _varint(buf, pos - 1)
            pos = _skip(buf, pos, key & 7)
    for spos, send in summary:
        while spos < send:
            key, spos = _varint(buf, spos)
            if key != 0x0A:
                spos = _skip(buf, spos, key & 7)
                continue
            n, spos = _varint(buf, spos)
            vend = spos + n
            tag = ""
            value: float | None = None
            tensor: tuple[int, int] | None = None
            vpos = spos
            while vpos < vend:
                k = buf[vpos]
                vpos += 1
                if k == 0x0A:
                    m, vpos = _varint(buf, vpos)
                    tag = buf[vpos : vpos + m].decode("utf-8", "replace")
                    vpos += m
                elif k == 0x15:
                    value = _F32.unpack_from(buf, vpos)[0]
                    vpos += 4
                elif k == 0x42:
                    m, vpos = _varint(buf, vpos)
                    tensor = (vpos, vpos + m)
                    vpos += m
                elif k == 0x4A:
                    m, vpos = _varint(buf, vpos)
                    name = _plugin_name(buf, vpos, vpos + m)
                    if name and tag:
                        plugins[tag] = name
                    vpos += m
                else:
                    if k >= 0x80:
                        k, vpos = _varint(buf, vpos - 1)
                    vpos = _skip(buf, vpos, k & 7)
            spos = vend
            if value is None and tensor is not None and plugins.get(tag, "scalars") == "scalars":
                value = _tensor_scalar(buf, tensor[0], tensor[1])
            if value is not None:
                out.append((tag, step, value, wall))


#: a whole TFRecord holding one Event with one simple_value, as torch, HF and Lightning write it:
#: length (< 128) | crc | Event{wall_time, step, summary{value{tag, simple_value}}} | crc
_SIMPLE_FRAME = re.compile(
    rb"([\x00-\x7f])\x00{7}.{4}\x09(.{8})\x10([\x80-\xff]{0,9}[\x00-\x7f])"
    rb"\x2a[\x00-\x7f]\x0a[\x00-\x7f]\x0a([\x00-\x7f])([^\x15]*)\x15(.{4}).{4}",
    re.S,
)


def scan(
    buf: bytes, *, verify_data: bool = False
) -> tuple[list[Scalar], dict[str, str], int, str | None, int]:
    """Every scalar of an event file: (scalars, tag plugins, frames read, damage note, bad events).

    The common record layout is matched by one anchored regex per record (its length byte and
    tag length are checked against the match, which makes a false match impossible in practice);
    any other record goes through the length-CRC-checked framing and :func:`parse_event`.
    """
    out: list[Scalar] = []
    plugins: dict[str, str] = {}
    append = out.append
    match = _SIMPLE_FRAME.match
    unpack_d = _F64.unpack
    unpack_f = _F32.unpack
    unpack_q = _U64.unpack_from
    unpack_i = _U32.unpack_from
    tags: dict[bytes, str] = {}
    header_crc: dict[bytes, int] = {}  # few distinct lengths: cache their CRCs
    size = len(buf)
    pos = frames = bad = 0
    while pos < size:
        m = match(buf, pos)
        if m is not None:
            n_b, wall_b, step_b, tlen, tag_b, val_b = m.groups()
            end = m.end()
            if (
                n_b[0] == end - pos - 16
                and tlen[0] == len(tag_b)
                and (
                    not verify_data
                    or unpack_i(buf, end - 4)[0] == masked_crc32c(buf[pos + 12 : end - 4])
                )
            ):
                tag = tags.get(tag_b)
                if tag is None:
                    tag = tags[tag_b] = tag_b.decode("utf-8", "replace")
                step = step_b[0] if len(step_b) == 1 else _varint(step_b, 0)[0]
                append((tag, step, unpack_f(val_b)[0], unpack_d(wall_b)[0]))
                frames += 1
                pos = end
                continue
        if size - pos < 12:
            return (
                out,
                plugins,
                frames,
                f"truncated record header at byte {pos} (a half-written file)",
                bad,
            )
        header = buf[pos : pos + 8]
        crc = header_crc.get(header)
        if crc is None:
            crc = header_crc[header] = masked_crc32c(header)
        if unpack_i(buf, pos + 8)[0] != crc:
            return (
                out,
                plugins,
                frames,
                f"corrupt record length at byte {pos}; the rest of the file was skipped",
                bad,
            )
        start = pos + 12
        end = start + unpack_q(buf, pos)[0]
        if end + 4 > size:
            return (
                out,
                plugins,
                frames,
                f"truncated last record at byte {pos} (a half-written file)",
                bad,
            )
        if verify_data and unpack_i(buf, end)[0] != masked_crc32c(buf[start:end]):
            return (
                out,
                plugins,
                frames,
                f"data CRC mismatch in the record at byte {pos}; the rest was skipped",
                bad,
            )
        try:
            parse_event(buf, start, end, out, plugins)
        except (IndexError, ValueError, UnicodeDecodeError, struct.error):
            bad += 1
        frames += 1
        pos = end + 4
    return out, plugins, frames, None, bad
