"""The command line as kubectl users type it: options before or after positional arguments."""

from __future__ import annotations

import pytest

from gingham.cli import parse


@pytest.mark.parametrize("argv", [
    ["lab", "exec", "--name", "mylab", "x/a", "--", "ip", "-4", "addr"],
    ["lab", "exec", "x/a", "--name", "mylab", "--", "ip", "-4", "addr"],
    ["lab", "exec", "-o", "json", "x/a", "--name=mylab", "--", "ip", "-4", "addr"],
])
def test_exec_options_anywhere_before_the_command(argv: list[str]) -> None:
    a = parse(argv)
    assert (a.name, a.target, a.command) == ("mylab", "x/a", ["ip", "-4", "addr"])


def test_everything_after_the_separator_is_the_command() -> None:
    a = parse(["lab", "exec", "x/a", "--name", "l", "--", "sh", "-c", "echo --name x", "--", "--name"])
    assert (a.name, a.command) == ("l", ["sh", "-c", "echo --name x", "--", "--name"])


def test_probe_options_after_positionals() -> None:
    a = parse(["lab", "probe", "a/b", "c/d", "80", "--name", "mylab", "--protocol", "udp"])
    assert (a.name, a.source, a.dest, a.port, a.protocol) == ("mylab", "a/b", "c/d", 80, "UDP")


def test_separator_elsewhere_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(["lab", "get", "pods", "--", "x"])
    assert e.value.code == 2
    assert "lab exec" in capsys.readouterr().err
