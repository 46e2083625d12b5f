"""The checks that say where a source file that could not be read is wrong.

They read in blocks; the blocks are made tiny here so that every quote, separator,
line break and multi-byte character falls across a block boundary somewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import jobs.filecheck
from common.errors import Code
from jobs.filecheck import csv_problem


@pytest.fixture(params=[3, 7, 1 << 23], ids=["block3", "block7", "block8MiB"])
def block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(jobs.filecheck, "BLOCK", request.param)
    return int(request.param)


def _write(tmp_path: Path, content: bytes | str, name: str = "x.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


GOOD = [
    pytest.param("a,b,c\n1,2,3\n4,5,6\n", id="plain"),
    pytest.param("a,b,c\n1,2,3\n4,5,6", id="no-final-newline"),
    pytest.param("a,b,c\r\n1,2,3\r\n4,5,6\r\n", id="crlf"),
    pytest.param('a,b,c\n"x, y",2,3\n"say ""hi""",5,6\n', id="quoted-commas-and-quotes"),
    pytest.param('a,b,c\n"line one\nline two, still",2,3\n4,5,6\n', id="multi-line-value"),
    pytest.param("a,b,c\n1,2,3\n\n4,5,6\n", id="blank-line"),
    pytest.param("名称,地区,说明\n甲公司,西湖区,好\n", id="chinese-utf8"),
    pytest.param(b"\xef\xbb\xbfa,b\n1,2\n", id="utf8-bom"),
]


@pytest.mark.parametrize("content", GOOD)
def test_a_well_formed_file_has_no_problem(tmp_path: Path, block: int, content: str) -> None:
    assert csv_problem(_write(tmp_path, content)) is None


BAD = [
    pytest.param(
        "a,b,c\n1,2,3\n4,5,6,7\n", 3, "the row has 4 fields where the header has 3", id="extra"
    ),
    pytest.param("a,b,c\n1,2,3\n4,5\n", 3, "the row has 2 fields where the header has 3", id="few"),
    pytest.param(
        'a,b,c\n"x\ny",2,3\n4,5,6,7\n', 4, "the row has 4 fields", id="extra-after-multiline"
    ),
    pytest.param(
        'a,b,c\n1,2,3\n4,"5,6\n7,8,9\n', 3, "a double quote opened in the row", id="unclosed"
    ),
    pytest.param(
        'a,b,c\n1,"2,3\n4,5,6\n7",8,9\n',
        2,
        "the row that starts on this line runs on to line 4 (4 fields where the header has 3)",
        id="closed-lines-later",
    ),
    pytest.param("a,b\n1,2\n3,4,5", 3, "the row has 3 fields", id="last-line-without-newline"),
]


@pytest.mark.parametrize(("content", "line", "message"), BAD)
def test_a_malformed_row_is_found_at_its_line(
    tmp_path: Path, block: int, content: str, line: int, message: str
) -> None:
    problem = csv_problem(_write(tmp_path, content))
    assert problem is not None
    assert (problem.line, problem.code) == (line, Code.DATA_CSV_SHAPE)
    assert message in problem.message


def test_gbk_is_recognised_with_the_command_that_converts_it(tmp_path: Path, block: int) -> None:
    text = "credit_code,name\n91330106MA27XYZ123,ok\n91330106MA27XYZ124,甲科技有限公司\n"
    problem = csv_problem(_write(tmp_path, text.encode("gbk"), "enterprises.csv"))
    assert problem is not None
    assert (problem.line, problem.code) == (3, Code.DATA_NOT_UTF8)
    assert problem.message.startswith("the file is not UTF-8 (line 3, column 'name', byte 0xBC)")
    assert problem.message.endswith("it looks like GBK")
    assert "iconv -f GBK -t UTF-8 enterprises.csv > utf8-enterprises.csv" in problem.fix


def test_gb18030_only_characters_are_named_gb18030(tmp_path: Path) -> None:
    # U+20087 is in GB18030 (four bytes) but not in GBK.
    text = "a,b\n1,\U00020087甲\n"
    problem = csv_problem(_write(tmp_path, text.encode("gb18030")))
    assert problem is not None
    assert problem.message.endswith("it looks like GB18030")


def test_utf16_is_recognised_by_its_byte_order_mark(tmp_path: Path) -> None:
    problem = csv_problem(_write(tmp_path, "a,b\n1,2\n".encode("utf-16")))
    assert problem is not None
    assert "UTF-16" in problem.message
    assert "iconv -f UTF-16 -t UTF-8" in problem.fix


def test_another_encoding_is_not_guessed(tmp_path: Path, block: int) -> None:
    problem = csv_problem(_write(tmp_path, "a,b\n1,café\n".encode("latin-1")))
    assert problem is not None
    assert problem.message == "the file is not UTF-8 (line 2, column 'b', byte 0xE9)"
    assert "iconv -f <its encoding>" in problem.fix


def test_a_bad_byte_in_the_header_is_said_to_be_there(tmp_path: Path) -> None:
    problem = csv_problem(_write(tmp_path, "a,名称\n1,2\n".encode("gbk")))
    assert problem is not None
    assert problem.message.startswith("the file is not UTF-8 (line 1, in the header")
