"""Golden files: a whole nft table, as FakeNft dumps it, compared with a file in tests/golden/.

A mismatch fails with a unified diff of the file against what the code makes now, so a
reviewer reads what changed in the table, line by line. After a change meant to alter the
tables, `GOLDEN_UPDATE=1 pytest tests/unit/test_golden_tables.py` writes the files anew;
the diff of the files is then part of the commit.
"""

from __future__ import annotations

import difflib
import os

import pytest

DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "golden")


def diff(expected: str, got: str, name: str) -> str:
    """The readable difference: the golden file against what was made."""
    return "".join(difflib.unified_diff(expected.splitlines(keepends=True), got.splitlines(keepends=True),
                                        f"tests/golden/{name}", "made now"))


def check(name: str, got: str) -> None:
    path = os.path.join(DIR, name)
    if os.environ.get("GOLDEN_UPDATE") == "1":
        with open(path, "w") as f:
            f.write(got)
        return
    if not os.path.exists(path):
        pytest.fail(f"no golden file tests/golden/{name}: run with GOLDEN_UPDATE=1 to write it")
    with open(path) as f:
        expected = f.read()
    if expected != got:
        pytest.fail(f"the table differs from tests/golden/{name}:\n{diff(expected, got, name)}", pytrace=False)
