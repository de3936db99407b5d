"""The user's documentation agrees with the code: every option and config key is documented, every
link resolves, and no tracker issue numbers leak into the pages users read."""

import dataclasses
import re
from pathlib import Path

import pytest

from rrdnet_cli.config import Config

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Presets are read by users too (their comments document every key).
USER_TEXTS = [*PAGES, *sorted((REPO / "configs").glob("*.yaml"))]


def _heading_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, in_code = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_heading_anchor(line.lstrip("#")))
    return anchors


def test_readme_stays_a_short_page():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("text", USER_TEXTS, ids=lambda path: str(path.relative_to(REPO)))
def test_no_tracker_issue_numbers(text):
    found = re.findall(r".{0,30}(?:\bissue \d+|#\d+).{0,30}", text.read_text(encoding="utf-8"), re.IGNORECASE)
    assert not found, found


def test_every_enhance_option_is_in_the_readme():
    from rrdnet_cli.cli import enhance

    readme = README.read_text(encoding="utf-8")
    names = [name for parameter in enhance.params for name in (*parameter.opts, *parameter.secondary_opts)]
    missing = [
        name for name in names if name.startswith("--") and f"`{name}" not in readme and f" {name}" not in readme
    ]
    assert not missing, f"options of rrdnet enhance missing from README.md: {missing}"


def test_every_config_key_is_documented():
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [field.name for field in dataclasses.fields(Config) if f"`{field.name}`" not in page]
    assert not missing, f"config keys missing from docs/configuration.md: {missing}"


def _python_blocks(page: Path, after: str) -> list[str]:
    """The ```python blocks of ``page`` after the heading ``after``."""
    text = page.read_text(encoding="utf-8").split(after, 1)[1]
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def _dark_file(path: Path, seed: int = 0) -> None:
    from PIL import Image

    from helpers import dark_array

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(dark_array(24, 32, seed)).save(path)


def test_readme_python_api_runs_as_written(tmp_path, monkeypatch):
    """The README's API section runs as printed, with names from the package root only."""
    (block,) = _python_blocks(README, "## Python API")
    imported = re.findall(r"^from (\S+) import", block, re.MULTILINE)
    assert set(imported) == {"rrdnet_cli"}, imported
    monkeypatch.chdir(tmp_path)
    _dark_file(tmp_path / "dark.jpg")
    _dark_file(tmp_path / "enhanced" / "a.png", seed=1)
    _dark_file(tmp_path / "ground_truth" / "a.png", seed=2)
    exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "bright.jpg").is_file() and (tmp_path / "bright.png").is_file()
    assert (tmp_path / "dark.npz").is_file()


def test_batch_page_python_runs_as_written(tmp_path, monkeypatch):
    (block,) = _python_blocks(REPO / "docs" / "batch.md", "## Python")
    monkeypatch.chdir(tmp_path)
    # One photo: the plan is then one process, and the test starts no worker interpreter.
    _dark_file(tmp_path / "shots" / "sub" / "y.jpg")
    exec(compile(block, "docs/batch.md", "exec"), {"__name__": "__main__"})  # as a script runs
    assert [path.relative_to(tmp_path) for path in (tmp_path / "bright").rglob("*.*")] == [Path("bright/sub/y.jpg")]


def _option_names(command) -> set[str]:
    return {name for parameter in command.params for name in (*parameter.opts, *parameter.secondary_opts)}


def _command(words: list[str]):
    from rrdnet_cli.cli import main

    command = main
    while words and hasattr(command, "commands") and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    return command


def test_every_documented_option_exists():
    """Options in the README's enhance table and in its examples are ones the commands take."""
    readme = README.read_text(encoding="utf-8")
    section = readme.split("### `rrdnet enhance", 1)[1].split("\n### ", 1)[0]
    table = "\n".join(line.split(" | ")[0] for line in section.splitlines() if line.startswith("| `"))
    assert "--tile" in table and "--output-dir" in table
    enhance_options = _option_names(_command(["enhance"]))
    unknown = [name for name in re.findall(r"(?<![\w-])--[a-z][a-z-]*", table) if name not in enhance_options]
    examples = readme.split("## Use", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    for line in examples.splitlines():
        words = line.split("#", 1)[0].split("|")[-1].split()
        if words[:1] == ["rrdnet"]:
            command = _command(words[1:])
            unknown += [
                f"{line}: {word}" for word in words if word.startswith("--") and word not in _option_names(command)
            ]
    assert not unknown, unknown


def _same(shown: str, value: object) -> bool:
    try:
        return float(shown) == float(str(value))
    except (TypeError, ValueError):
        return shown.lower() == str(value).lower()


def test_configuration_page_shows_the_presets_values():
    """The `default` and `paper` columns of docs/configuration.md are what the presets load."""
    from rrdnet_cli.config import load_config

    presets = {name: load_config(name).to_dict() for name in ("default", "paper")}
    wrong = []
    for line in (REPO / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        keys = re.findall(r"`([a-z_]+)`", cells[0])
        for column, name in ((1, "default"), (2, "paper")):
            shown = [value.strip() for value in cells[column].split(",")]
            for key, value in zip(keys, shown if len(shown) == len(keys) else shown * len(keys)):
                if not _same(value, presets[name][key]):
                    wrong.append(f"{key} ({name}): page {value}, preset {presets[name][key]}")
    assert not wrong, wrong
