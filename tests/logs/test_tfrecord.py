"""TFRecord framing and the minimal Event decoder, against hand-built records."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from stabletrain.logs.read import read_run
from stabletrain.logs.readers.tensorboard import read_scalars
from stabletrain.logs.readers.tfrecord import crc32c, frame, looks_like_tfrecord, scan


def _tensor_event(step: int, tag: bytes, value: float, *, packed: bool) -> bytes:
    """An Event as TF2 writes scalars: tensor{dtype DT_FLOAT, float_val} + scalars metadata."""
    if packed:
        tensor = b"\x08\x01" + b"\x2a\x04" + struct.pack("<f", value)
    else:
        tensor = b"\x08\x02" + b"\x22\x08" + struct.pack("<d", value)  # DT_DOUBLE tensor_content
    meta = b"\x0a\x09\x0a\x07scalars"
    val = b"\x0a" + bytes([len(tag)]) + tag + b"\x42" + bytes([len(tensor)]) + tensor
    val += b"\x4a" + bytes([len(meta)]) + meta
    summ = b"\x0a" + bytes([len(val)]) + val
    return (
        b"\x09"
        + struct.pack("<d", 1.0)
        + b"\x10"
        + bytes([step])
        + b"\x2a"
        + bytes([len(summ)])
        + summ
    )


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_tf2_tensor_scalars(tmp_path: Path) -> None:
    f = tmp_path / "events.out.tfevents.1.host"
    f.write_bytes(
        frame(b"\x09" + struct.pack("<d", 1.0) + b"\x1a\x0dbrain.Event:2")
        + frame(_tensor_event(1, b"loss", 2.5, packed=True))
        + frame(_tensor_event(2, b"loss", 0.125, packed=False))
    )
    assert looks_like_tfrecord(f.read_bytes()[:12])
    data = read_run(f)
    assert [(r.step, r.loss) for r in data.records] == [(1, 2.5), (2, 0.125)]


def test_data_crc_checked_on_request(tmp_path: Path) -> None:
    ev = _tensor_event(3, b"loss", 1.0, packed=True)
    raw = bytearray(frame(ev) + frame(ev))
    raw[len(frame(ev)) + 14] ^= 0xFF  # flip a byte of the second record's wall_time
    f = tmp_path / "events.out.tfevents.2.host"
    f.write_bytes(bytes(raw))
    notes: list[str] = []
    got, _plugins = read_scalars(f, notes, verify_crc=True)
    assert len(got) == 1 and "CRC mismatch" in notes[0]
    out, _p, frames, damage, bad = scan(bytes(raw))
    assert frames == 2 and damage is None and bad == 0 and len(out) == 2  # unchecked: read


def test_non_scalar_tensors_are_ignored(tmp_path: Path) -> None:
    tensor = b"\x08\x07" + b"\x42\x02hi"  # DT_STRING (text plugin)
    meta = b"\x0a\x06\x0a\x04text"
    val = b"\x0a\x04note\x42" + bytes([len(tensor)]) + tensor + b"\x4a" + bytes([len(meta)]) + meta
    ev = b"\x10\x05\x2a" + bytes([len(val) + 2]) + b"\x0a" + bytes([len(val)]) + val
    out, _plugins, frames, damage, _bad = scan(frame(ev))
    assert frames == 1 and damage is None and out == []


@pytest.mark.parametrize("cut", [3, 11, 20])
def test_truncation_anywhere_is_a_note(tmp_path: Path, cut: int) -> None:
    ev = _tensor_event(1, b"loss", 1.0, packed=True)
    raw = frame(ev) + frame(ev)
    out, _p, frames, damage, _bad = scan(raw[: len(frame(ev)) + cut])
    assert frames == 1 and len(out) == 1 and damage and "truncated" in damage
