"""Fixtures and test-process settings; the shared helper functions are in helpers.py."""

import os
import signal

import pytest
import torch

# Test images are tiny: extra intra-op threads only add overhead, and on a shared machine their
# spin-waiting slows the suite several-fold. (The test process's own setting, not the library's.)
torch.set_num_threads(1)
# One process per run unless a test asks for workers (--jobs): spawning them costs seconds, and
# monkeypatches reach only this process. Inherited by the subprocesses the tests start.
os.environ["RRDNET_JOBS"] = "1"
# Some tests press Ctrl-C on the processes they start. A shell runs a background command with
# SIGINT ignored, and an ignored signal stays ignored in every child: the suite started that way
# (`make test &`) would find rrdnet deaf to Ctrl-C. A handler (unlike "ignore") is reset to the
# default in a child, so installing Python's own gives the children a normal SIGINT.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def tiny_config():
    """The paper preset cut to three CPU steps: the exact maths, quickly."""
    from rrdnet_cli import load_config

    return load_config("paper", iterations=3, device="cpu")


@pytest.fixture
def tree(tmp_path):
    """A folder of three dark images (one in a subfolder) and a text file."""
    from helpers import write_dark

    write_dark(tmp_path / "in" / "b.png")
    write_dark(tmp_path / "in" / "a.jpg")
    write_dark(tmp_path / "in" / "sub" / "c.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    return tmp_path / "in"
