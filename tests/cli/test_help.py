"""Every command explains itself, and user errors come without a traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from disburse.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*prefix, name))
    return out


@pytest.mark.parametrize("path", _commands(main), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    doc = result.output.split("\n\n")[1].strip()
    assert len(doc) > 20, f"{' '.join(path)} has no help text"


def test_missing_data_folder_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "ingest",
            "--data",
            str(tmp_path / "nope"),
            "--as-of",
            "2026-01-01",
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--store",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "data folder" in result.output
    assert "fix:" in result.output


def test_bad_database_url_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["quarantine", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none"]
    )
    assert result.exit_code == 1
    assert "cannot open" in result.output
    assert "Traceback" not in result.output


def test_sqlite_file_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["quarantine", "--db", f"sqlite:///{tmp_path / 'nope' / 'x.db'}"]
    )
    assert result.exit_code == 1
    assert f"fix: the folder '{tmp_path / 'nope'}' does not exist" in result.output
