"""Option parsers shared by the command modules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

DB_HELP = "Database URL (default: $DISBURSE_DB, else ./disburse.db)."

# --policies, as `run` and `simulate` take it.
policies_option = click.option(
    "--policies",
    "policies_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Policy files or folders (default: the shipped policies).",
)


def parse_date(_ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    """A click callback: YYYY-MM-DD as a date, or a usage error naming the option."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date written YYYY-MM-DD", param=param
        ) from None
