"""safe_io: regular files only, a size cap, bounded JSON and YAML; each limit one error naming the file."""

from __future__ import annotations

import json
import math
import os
import resource
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stabletrain import safe_io
from stabletrain.errors import ConfigError, LogReadError

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_reads_a_regular_file_and_a_symlink_to_one(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("héllo\n", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(f)
    assert safe_io.read_text(f) == "héllo\n"
    assert safe_io.read_bytes(link) == "héllo\n".encode()
    assert safe_io.regular_file(link) == link


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "log.txt"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def read() -> None:
        try:
            safe_io.read_text(fifo)
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert isinstance(result[0], LogReadError)
    assert str(fifo) in str(result[0]) and "FIFO" in str(result[0])


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_symlink_to_a_device_is_refused(tmp_path: Path, target: str) -> None:
    link = tmp_path / "config.yaml"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match=r"config\.yaml: is a character device"):
        safe_io.load_yaml(link, error=ConfigError)
    with pytest.raises(LogReadError, match="character device"):
        safe_io.regular_file(link)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LogReadError, match="is a directory"):
        safe_io.read_text(tmp_path)
    with pytest.raises(LogReadError, match=r"nope\.json: cannot read \(No such file"):
        safe_io.load_json(tmp_path / "nope.json")


def test_size_cap(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_bytes(b"1" * 2000)
    with pytest.raises(ConfigError, match=r"big\.yaml: 2,000 bytes is over the 1,000-byte limit"):
        safe_io.read_text(f, max_bytes=1000, error=ConfigError)
    assert len(safe_io.read_text(f, max_bytes=2000)) == 2000


def test_bad_utf8_names_the_file_unless_replaced(tmp_path: Path) -> None:
    f = tmp_path / "x.log"
    f.write_bytes(b"loss: 1\xff\n")
    with pytest.raises(LogReadError, match=r"x\.log: not UTF-8"):
        safe_io.read_text(f)
    assert safe_io.read_text(f, errors="replace") == "loss: 1\ufffd\n"


def test_json_nonfinite_and_huge_numbers_are_data() -> None:
    obj = safe_io.parse_json(
        '{"epoch": Infinity, "loss": NaN, "big": '
        + "9" * 400
        + ', "neg": -'
        + "1" * 5000
        + ', "n": 3}',
        source="s.json",
    )
    assert obj["epoch"] == math.inf and math.isnan(obj["loss"])
    assert obj["big"] == math.inf and obj["neg"] == -math.inf
    assert obj["n"] == 3 and isinstance(obj["n"], int)


def test_json_depth_is_bounded() -> None:
    deep = "[" * 1000 + "]" * 1000
    with pytest.raises(LogReadError, match=r"s\.json: nested deeper than 100 levels"):
        safe_io.parse_json(deep, source="s.json")
    shallow_but_over = "[" * 60 + "]" * 60
    with pytest.raises(LogReadError, match="deeper than 50"):
        safe_io.parse_json(shallow_but_over, source="s.json", max_depth=50)
    assert safe_io.parse_json("[" * 50 + "]" * 50, source="s.json", max_depth=50) is not None


def test_json_syntax_error_is_left_for_repair_but_load_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(json.JSONDecodeError):
        safe_io.parse_json('{"a": 1,}', source="s.json")
    f = tmp_path / "bad.json"
    f.write_text('{"a": ', encoding="utf-8")
    with pytest.raises(LogReadError, match=r"bad\.json: invalid JSON"):
        safe_io.load_json(f)


def test_yaml_reads_anchors_merges_and_nonfinite() -> None:
    text = "base: &b {lr: 1.0e-3, warmup: 10}\nrun:\n  <<: *b\n  lr: .inf\n  big: " + "7" * 400
    obj = safe_io.parse_yaml(text, source="c.yaml")
    assert obj["run"]["warmup"] == 10 and obj["run"]["lr"] == math.inf
    assert obj["run"]["big"] == math.inf


def test_yaml_alias_bomb_is_refused_fast_and_small() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: more than 100,000 values once aliases"):
        safe_io.parse_yaml(BOMB, source="bomb.yaml", error=ConfigError)
    assert time.perf_counter() - t0 < 2.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100_000


def test_yaml_depth_is_bounded_both_flow_and_block() -> None:
    with pytest.raises(LogReadError, match="nested deeper than 100"):
        safe_io.parse_yaml("[" * 1000 + "]" * 1000, source="d.yaml")
    block = "".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "v: 1\n"
    with pytest.raises(LogReadError, match="nested deeper than 100"):
        safe_io.parse_yaml(block, source="d.yaml")


def test_yaml_depth_counts_alias_expansion() -> None:
    inner = "[" * 60 + "1" + "]" * 60
    text = f"a: &a {inner}\nb: " + "[" * 50 + "*a" + "]" * 50
    with pytest.raises(LogReadError, match="once aliases are expanded"):
        safe_io.parse_yaml(text, source="d.yaml")


def test_yaml_never_constructs_python_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"x: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML"):
        safe_io.parse_yaml(text, source="c.yaml", error=ConfigError)
    assert not marker.exists()


def test_yaml_syntax_error_is_one_line() -> None:
    with pytest.raises(LogReadError) as e:
        safe_io.parse_yaml("a: [1, 2\nb: :\n", source="c.yaml")
    assert "\n" not in str(e.value) and str(e.value).startswith("c.yaml: invalid YAML")


def test_number() -> None:
    assert safe_io.number("12") == 12
    assert safe_io.number("-" + "9" * 400) == -math.inf
    assert safe_io.number("9" * 300) == int("9" * 300)


def test_json_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '[{"k": "]]]]\\"[[[[' + "[" * 200 + '"}]'
    assert safe_io.parse_json(text, source="s.json")[0]["k"].startswith("]]]]")


def test_reading_allocates_only_what_the_file_holds(tmp_path: Path) -> None:
    """A small file under a 2 GiB cap must not allocate 2 GiB (fuzz: MemoryError under RLIMIT_AS)."""
    f = tmp_path / "small.log"
    f.write_bytes(b"loss 1.0\n" * 10)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert safe_io.read_bytes(f, max_bytes=1 << 40) == b"loss 1.0\n" * 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000


def test_yaml_control_characters_are_an_error_naming_the_source() -> None:
    with pytest.raises(LogReadError, match=r"c\.yaml: invalid YAML \(unacceptable character"):
        safe_io.parse_yaml("lr: \x1b[31m1\n", source="c.yaml")


def _depth(obj: object) -> int:
    if isinstance(obj, dict):
        return 1 + max((_depth(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((_depth(v) for v in obj), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text('[]{}"\\ab1'),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(st.text('[]{}"\\ab', max_size=4), kids, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=150, derandomize=True, database=None, deadline=None)
@given(obj=_JSON, ascii_only=st.booleans())
def test_json_depth_scan_matches_the_parsed_depth(obj: object, ascii_only: bool) -> None:
    """The pre-parse scan sees exactly the nesting of the document, whatever the strings hold."""
    text = json.dumps(obj, ensure_ascii=ascii_only)
    assert safe_io._json_shape(text)[0] == _depth(obj)
