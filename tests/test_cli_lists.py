"""Comma-list options share one parser (:mod:`dupwatch.cli_lists`): blanks are skipped, and a bad
entry is a usage error naming its option (exit 2), not a traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from dupwatch.cli import app
from dupwatch.cli_lists import ints, names


def test_names_and_ints_skip_blank_entries() -> None:
    assert names(" a, b,,c ") == ["a", "b", "c"]
    assert names(None) == [] and names("") == []
    assert ints("600, 1200,", "--lengths") == [600, 1200]
    assert ints("4,16", "--frames", count=2) == [4, 16]


def test_a_bad_entry_names_its_option() -> None:
    with pytest.raises(typer.BadParameter, match="'x' is not an integer"):
        ints("1,x", "--lengths")
    with pytest.raises(typer.BadParameter, match="expected 2"):
        ints("1,2,3", "--frames", count=2)


@pytest.mark.parametrize("argv, option", [
    (["bench", "fine-long", "--lengths", "600,ten"], "--lengths"),
    (["bench", "query-latency", "--frames", "8"], "--frames"),
    (["train", "real-benchmarks", "--train-seeds", "1,b"], "--train-seeds"),
])
def test_the_command_line_reports_a_bad_list_as_a_usage_error(argv: list[str], option: str) -> None:
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert option in res.output and "Traceback" not in res.output
