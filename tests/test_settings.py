"""The values the command checks before any heavy import: counts and shards (``rrdnet_cli.settings``)."""

import subprocess
import sys

import pytest

from rrdnet_cli import UsageError
from rrdnet_cli.settings import parse_count, parse_shard


@pytest.mark.parametrize("text, expected", [("1", 1), (" 12 ", 12), ("auto", "auto"), ("AUTO", "auto")])
def test_counts(text, expected):
    assert parse_count(text, "--jobs", allow_auto=True) == expected


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "x", "", "auto"])
def test_bad_counts_are_usage_errors(text):
    with pytest.raises(UsageError, match="--threads '.*': expected a positive whole number$"):
        parse_count(text, "--threads")


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("2/3", (2, 3)), (" 4 / 10 ", (4, 10))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    "text, needle",
    [
        ("3/3", "counts from 0"),
        ("1/0", "at least 1"),
        ("a/b", "expected K/N"),
        ("-1/3", "expected K/N"),
        ("2", "expected K/N"),
    ],
)
def test_bad_shards_are_usage_errors(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_shard(text)


def test_the_module_imports_nothing_heavy():
    code = "import sys, rrdnet_cli.settings; print(sorted({'torch', 'numpy', 'PIL'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output == "[]\n"
