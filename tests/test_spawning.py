"""The spawned processes' first call (``rrdnet_cli.spawning``), run in processes of their own: it
changes the collector of the process it runs in."""

import json
import subprocess
import sys

from helpers import cli_environment

CALL = """
import gc, json, sys
from rrdnet_cli import spawning
if sys.argv[1] == "off":
    gc.disable()
assert "colorsys" not in sys.modules
result = spawning.run("colorsys", "rgb_to_hsv", 1.0, 0.5, 0.0)
print(json.dumps({"result": result, "imported": "colorsys" in sys.modules,
                  "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def call(collector: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CALL, collector], capture_output=True, text=True, env=cli_environment(), check=True
    )
    return json.loads(done.stdout)


def test_run_imports_the_module_calls_the_function_and_freezes_what_was_imported():
    import colorsys

    answer = call("on")
    assert answer["result"] == list(colorsys.rgb_to_hsv(1.0, 0.5, 0.0)) and answer["imported"]
    assert answer["enabled"] is True
    assert answer["frozen"] > 1000  # everything the interpreter and the import had made


def test_run_leaves_a_collector_that_was_off_off():
    answer = call("off")
    assert answer["enabled"] is False and answer["frozen"] > 1000
