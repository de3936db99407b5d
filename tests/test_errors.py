"""errors.py: the message constructors the core shares."""

from pathlib import Path

from rrdnet_cli.errors import InputError, OutputError, cannot_write, naming, os_failure


def test_naming_prefixes_the_name_once():
    assert naming("a.png", "file is empty") == "a.png: file is empty"
    assert naming(Path("a.png"), "a.png: file is empty") == "a.png: file is empty"


def test_os_failures_give_the_system_reason_or_the_error_text():
    denied = PermissionError(13, "Permission denied")
    assert str(cannot_write(Path("out/a.png"), denied)) == "out/a.png: cannot write (Permission denied)"
    assert isinstance(cannot_write("x", denied), OutputError)
    failure = os_failure(InputError, "b.png", "cannot read", OSError("no reason given"))
    assert isinstance(failure, InputError) and str(failure) == "b.png: cannot read (no reason given)"
