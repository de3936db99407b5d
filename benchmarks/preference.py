"""Blind side-by-side preference test: our results against each peer, as people judge them.

    python benchmarks/preference.py make --name NAME (--ours DIR | --ours-config PRESET|YAML
                                     [--ours-option=--brightness=0.45 ...])
                                     [--photos PATH ...] [--peers lime_bm3d,zero_dce_pp]
                                     [--night dicm/01,dicm/08,dicm/12] [--seed 0] [--folder DIR]
    python benchmarks/preference.py brief [--sheets DIR]
    python benchmarks/preference.py tally --name NAME --answers FILE [FILE ...] [--key FILE]

``make`` writes, for every photo and every peer, one sheet: two results side by side, ours and the
peer's, labelled only "A" and "B" (which side is ours is drawn at random from ``--seed``), each at
most ``PANEL_WIDTH`` px wide, with the dark original small underneath. The sheets are numbered in
a shuffled order (``sheet_01.png``, ...), so neither the file name nor the order tells the photo's
peer. They go to ``FOLDER/NAME/sheets/`` with the judges' brief (``BRIEF.md``) and an answer
template (``answers_template.txt``); the key (per sheet: the photo, the peer, our side and whether
the photo is a night scene) goes to ``FOLDER/NAME/key.json``, outside the folder judges are given.
``FOLDER`` defaults to ``benchmarks/preference/`` (not committed: sheets are pictures, and the
key must not travel with them).

Ours: ``--ours DIR``, the results of ``rrdnet enhance`` (found as ``DIR/<photo's folder>/<stem>.*``
or ``DIR/<stem>.*``, with ``--ours-suffix`` when the run had ``--suffix``), or ``--ours-config``:
this script runs ``rrdnet enhance --config CONFIG`` with any ``--ours-option`` on the photos,
keeping the results in ``benchmarks/cache/ours-<digest>/`` (the digest covers the config, the
options and the package's code, presets and shipped weights, so a changed rendering is redone).

Peers (``peers.py``, the ``[benchmarks]`` extra) run on the photo at its own size and are cached in
``benchmarks/cache/``: ``lime_bm3d`` (LIME with BM3D), ``lime``, ``zero_dce_pp``, ``clahe``. SCI is
not available (no installable package ships its weights).

The photos default to the 17 real ones of ``../shared/data/real`` (``lol_low`` and ``dicm``); night
scenes (``--night``, by folder/stem) default to DICM 01 (a lit tower against a black sky), 08 (a
city's lights from a hill, black sky) and 12 (a lit statue and rover on a black night).

``tally`` reads the judges' answer files and the key and writes
``benchmarks/results/preference_NAME.json`` (also printed as one JSON line): per peer the
judgements, our wins and losses and win percentage, the confident losses, the confident losses on
night scenes, every loss with its reason, per photo wins and losses, the judges, and the machine
record. Answer files (one per judge), text::

    judge: Ana
    # sheet  choice  confidence  reason
    sheet_01 A confident the sky stays black, the tower keeps its detail
    sheet_02 B slight    warmer, but a little noisier

(``choice`` is ``A`` or ``B``, the picture the judge would keep; ``confidence`` is ``confident`` or
``slight``; the reason is the rest of the line; ``#`` starts a comment; without a ``judge:`` line
the file's stem names the judge) or JSON::

    {"judge": "Ana", "answers": {"sheet_01": {"choice": "A", "confidence": "confident", "reason": "..."}}}

``brief`` prints the judges' brief (with ``--sheets``, followed by the answer template for them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from rrdnet_cli.sheet import label_font  # noqa: E402

import common  # noqa: E402

DEFAULT_PHOTOS = (common.DEFAULT_DATA / "real" / "lol_low", common.DEFAULT_DATA / "real" / "dicm")
DEFAULT_PEERS = ("lime_bm3d", "zero_dce_pp")
DEFAULT_NIGHT = ("dicm/01", "dicm/08", "dicm/12")
DEFAULT_FOLDER = REPO / "benchmarks" / "preference"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
CHOICES = ("A", "B")
CONFIDENCES = ("confident", "slight")
# A sheet is viewed as one picture: two results of at most this width side by side, the original
# at half that width underneath.
PANEL_WIDTH = 640
ORIGINAL_SCALE = 0.5
MARGIN = 16
LABEL_HEIGHT = 52
BACKGROUND = (40, 40, 40)
TEXT = (235, 235, 235)
# The targets the default is held to against each peer: the share of judgements won (zero_dce_pp:
# every one), and no confident loss on a night scene.
GOAL_WIN_PERCENT = {"zero_dce_pp": 100.0}
GOAL_WIN_PERCENT_OTHERS = 60.0

BRIEF = """\
# Which picture would you keep?

You are a photo editor. Each sheet shows two edits, **A** and **B**, of the same dark photo; the
dark original is shown small underneath. For each sheet, choose the edit a photographer would
keep and hand to a client, and say how sure you are.

Judge the picture, as a photographer would:
- **Natural light.** The scene looks lit the way it was: bright things stay brighter than dark
  ones, lamps and skies look like light, faces and walls are not flattened into one grey level.
- **A night scene stays a night scene.** A black sky or a dark background may stay dark; it
  should not be lifted into a grey, olive or coloured haze.
- **No noise lifted.** Shadows brightened into visible grain, blotches or colour speckle count
  against an edit.
- **Colours kept.** The colours of the original (look at it, underneath) are kept: no yellow-green,
  magenta or blue cast, no washed-out or oversaturated colours.
- **Highlights with detail.** Bright subjects (lit buildings, statues, lamps, clouds) keep their
  texture rather than becoming a flat pale or white patch.
- Brightness alone is not quality: the brighter edit is not better unless it is the better photo.

Do not try to guess which method made which edit, and do not compare sheets with one another:
judge each sheet on its own. The sides are drawn at random.

Answer one line per sheet:

    sheet_01 A confident the sky stays black and the tower keeps its detail
    sheet_02 B slight    a little noisier but the colours are right

- the sheet's name (as its file name, without `.png`);
- `A` or `B`: the edit you would keep (always choose one, even when they are close);
- `confident` (you would clearly keep it) or `slight` (a close call);
- a short reason: what decided it.

Start your answers with a line `judge: YOUR NAME`.
"""


class PreferenceError(Exception):
    """A problem with the inputs of a step, reported as one line."""


# ---------------------------------------------------------------------------------------- photos


def photo_id(path: Path) -> str:
    """``dicm/01.jpg``: the photo's folder and file name, how the key and the reports name it."""
    return f"{path.parent.name}/{path.name}"


def night_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def list_photos(paths: list[Path]) -> list[Path]:
    photos = []
    for path in (path.resolve() for path in paths):  # rrdnet enhance runs from the repository
        if path.is_dir():
            photos += sorted(child for child in path.iterdir() if child.suffix.lower() in PHOTO_SUFFIXES)
        elif path.is_file():
            photos.append(path)
        else:
            raise PreferenceError(f"{path}: no such photo or folder")
    if not photos:
        raise PreferenceError("no photos found")
    names = [photo_id(photo) for photo in photos]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PreferenceError(f"two photos have the same folder and name: {', '.join(duplicates)}")
    return photos


def read_rgb(path: Path) -> np.ndarray:
    """8-bit RGB ``(H, W, 3)`` of ``path``, with a one-line error when it cannot be read."""
    try:
        with Image.open(path) as opened:
            return np.asarray(opened.convert("RGB")).copy()
    except (OSError, ValueError) as error:
        raise PreferenceError(f"{path}: cannot read ({error})") from None


# ------------------------------------------------------------------------------------------ ours


def find_ours(folder: Path, photo: Path, suffix: str = "") -> Path:
    """Our result for ``photo`` in ``folder`` (an ``rrdnet enhance`` output folder)."""
    stem = photo.stem + suffix
    for place in (folder / photo.parent.name, folder):
        matches = sorted(path for path in place.glob(f"{stem}.*") if path.suffix.lower() in PHOTO_SUFFIXES)
        if len(matches) > 1:
            raise PreferenceError(
                f"{place}: several results for {photo_id(photo)}: {', '.join(path.name for path in matches)}"
            )
        if matches:
            return matches[0]
    raise PreferenceError(
        f"{folder}: no result for {photo_id(photo)} (looked for {stem}.* there and in {photo.parent.name}/)"
    )


def package_digest(config: str, options: list[str]) -> str:
    """What decides ``rrdnet enhance``'s pictures: the config (its file's text when it is a file),
    the options, and the package's code, presets and shipped data."""
    digest = hashlib.sha256(json.dumps([config, options]).encode())
    if Path(config).is_file():
        digest.update(Path(config).read_bytes())
    for pattern in ("rrdnet_cli/*.py", "rrdnet_cli/data/*", "configs/*.yaml"):
        for path in sorted(REPO.glob(pattern)):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def run_ours(config: str, options: list[str], photos: list[Path]) -> Path:
    """``rrdnet enhance --config CONFIG OPTIONS`` on ``photos`` (one run per source folder, so
    results cannot collide), kept in ``benchmarks/cache/ours-<digest>/<folder>/``; photos already
    done are skipped. Returns the folder."""
    if Path(config).is_file():  # a YAML named from wherever this script was started
        config = str(Path(config).resolve())
    output = common.CACHE / f"ours-{package_digest(config, options)}"
    by_folder: dict[Path, list[Path]] = {}
    for photo in photos:
        by_folder.setdefault(photo.parent, []).append(photo)
    for source, files in by_folder.items():
        command = [
            sys.executable,
            "-m",
            "rrdnet_cli",
            "enhance",
            *map(str, files),
            "-o",
            str(output / source.name),
            "--config",
            config,
            "--skip-existing",
            "--quiet",
            *options,
        ]
        print(f"preference.py: {' '.join(command[1:])}", file=sys.stderr)
        if subprocess.run(command, cwd=REPO).returncode != 0:
            raise PreferenceError(f"rrdnet enhance --config {config} failed on {source} (see above)")
    (output / "command.json").write_text(json.dumps({"config": config, "options": options}) + "\n")
    return output


# ---------------------------------------------------------------------------------------- sheets


def _fit(picture: Image.Image, width: int) -> Image.Image:
    if picture.width <= width:
        return picture
    height = max(1, round(picture.height * width / picture.width))
    return picture.resize((width, height), Image.Resampling.LANCZOS)


def _centred_text(draw: ImageDraw.ImageDraw, centre_x: float, top: int, height: int, text: str, font) -> None:
    left, upper, right, lower = draw.textbbox((0, 0), text, font=font)
    draw.text(
        (centre_x - (right - left) / 2 - left, top + (height - (lower - upper)) / 2 - upper), text, fill=TEXT, font=font
    )


def make_sheet(picture_a: np.ndarray, picture_b: np.ndarray, original: np.ndarray) -> Image.Image:
    """One sheet: ``picture_a`` and ``picture_b`` ``(H, W, 3)`` uint8 side by side under the labels
    "A" and "B", each at most ``PANEL_WIDTH`` wide, and ``original`` at half that width underneath."""
    panels = [_fit(Image.fromarray(picture), PANEL_WIDTH) for picture in (picture_a, picture_b)]
    panel_width = max(panel.width for panel in panels)
    panel_height = max(panel.height for panel in panels)
    small = _fit(Image.fromarray(original), max(1, round(panel_width * ORIGINAL_SCALE)))
    small_label = LABEL_HEIGHT // 2
    width = 3 * MARGIN + 2 * panel_width
    height = LABEL_HEIGHT + panel_height + MARGIN + small_label + small.height + MARGIN
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    big, little = label_font(36), label_font(18)
    for index, (label, panel) in enumerate(zip(CHOICES, panels)):
        left = MARGIN + index * (panel_width + MARGIN)
        _centred_text(draw, left + panel_width / 2, 0, LABEL_HEIGHT, label, big)
        sheet.paste(panel, (left + (panel_width - panel.width) // 2, LABEL_HEIGHT))
    top = LABEL_HEIGHT + panel_height + MARGIN
    _centred_text(draw, width / 2, top, small_label, "original", little)
    sheet.paste(small, ((width - small.width) // 2, top + small_label))
    return sheet


def answers_template(sheet_names: list[str]) -> str:
    lines = ["judge: YOUR NAME", "# sheet  choice (A or B)  confidence (confident or slight)  reason"]
    lines += [f"{name} ? ? " for name in sheet_names]
    return "\n".join(lines) + "\n"


def make(arguments: argparse.Namespace) -> dict:
    import peers  # the [benchmarks] extra, only needed here

    chosen = [name.strip() for name in arguments.peers.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in peers.PEERS]
    if unknown or not chosen:
        raise PreferenceError(
            f"--peers: unknown peer {', '.join(unknown) or '(none given)'}; choose from {', '.join(peers.PEERS)}"
        )
    absent = peers.missing()
    if absent:
        raise PreferenceError(
            f"the peers need the optional extra [benchmarks] ({peers.INSTALL_HINT}); missing: {', '.join(absent)}"
        )
    photos = list_photos(arguments.photos or list(DEFAULT_PHOTOS))
    night = {name.strip() for name in arguments.night.split(",") if name.strip()}
    if arguments.ours is not None:
        if not arguments.ours.is_dir():
            raise PreferenceError(f"--ours {arguments.ours}: no such folder")
        ours_folder, ours = arguments.ours, {"folder": str(arguments.ours), "suffix": arguments.ours_suffix}
    else:
        ours_folder = run_ours(arguments.ours_config, arguments.ours_option, photos)
        ours = {"config": arguments.ours_config, "options": arguments.ours_option, "folder": str(ours_folder)}
    ours_paths = {
        photo: find_ours(ours_folder, photo, arguments.ours_suffix if arguments.ours else "") for photo in photos
    }

    pairs = [(photo, peer) for photo in photos for peer in chosen]
    draw = random.Random(arguments.seed)
    draw.shuffle(pairs)
    target = arguments.folder / arguments.name
    sheets_folder = target / "sheets"
    sheets_folder.mkdir(parents=True, exist_ok=True)
    for old in sheets_folder.glob("sheet_*.png"):
        old.unlink()  # a sheet left from an earlier, larger set would have no key
    digits = max(2, len(str(len(pairs))))
    key = {}
    originals: dict[Path, np.ndarray] = {}
    for number, (photo, peer) in enumerate(pairs, start=1):
        if photo not in originals:
            originals[photo] = read_rgb(photo)
        original = originals[photo]
        ours_picture = read_rgb(ours_paths[photo])
        peer_picture = peers.cached(peer, common.to_tensor(original), common.CACHE)
        peer_picture = np.round(peer_picture[0].permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
        ours_side = draw.choice(CHOICES)
        a, b = (ours_picture, peer_picture) if ours_side == "A" else (peer_picture, ours_picture)
        name = f"sheet_{number:0{digits}d}"
        make_sheet(a, b, original).save(sheets_folder / f"{name}.png")
        key[name] = {
            "photo": photo_id(photo),
            "peer": peer,
            "ours": ours_side,
            "night": night_id(photo) in night,
            "ours_file": str(ours_paths[photo]),
        }
        print(f"{name}: {photo_id(photo)} against {peer}", file=sys.stderr)
    (sheets_folder / "BRIEF.md").write_text(BRIEF)
    (sheets_folder / "answers_template.txt").write_text(answers_template(list(key)))
    record = {
        "name": arguments.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": arguments.seed,
        "ours": ours,
        "peers": chosen,
        "photos": [photo_id(photo) for photo in photos],
        "night": sorted(photo_id(photo) for photo in photos if night_id(photo) in night),
        "sheets_folder": str(sheets_folder),
        "sheets": key,
    }
    key_path = arguments.key or target / "key.json"
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_text(json.dumps(record, indent=1) + "\n")
    summary = {"sheets": len(key), "sheets_folder": str(sheets_folder), "key": str(key_path)}
    print(json.dumps(summary))
    return summary


# ----------------------------------------------------------------------------------------- tally


def _answer(path: Path, where: str, sheet: str, choice: str, confidence: str, reason: str) -> dict:
    sheet = sheet.removesuffix(".png")
    choice, confidence = choice.strip().upper(), confidence.strip().lower()
    if choice not in CHOICES:
        raise PreferenceError(f"{path}{where}: choice {choice!r} for {sheet}; expected A or B")
    if confidence not in CONFIDENCES:
        raise PreferenceError(f"{path}{where}: confidence {confidence!r} for {sheet}; expected confident or slight")
    return {"sheet": sheet, "choice": choice, "confidence": confidence, "reason": reason.strip()}


def read_answers(path: Path) -> tuple[str, list[dict]]:
    """``(judge, answers)`` of one answer file (text or JSON, see the module's docstring)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PreferenceError(f"{path}: cannot read ({error})") from None
    judge, answers = path.stem, []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            judge = str(data.get("judge") or judge)
            for sheet, answer in data["answers"].items():
                answers.append(
                    _answer(path, "", sheet, answer["choice"], answer["confidence"], str(answer.get("reason", "")))
                )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise PreferenceError(f"{path}: not an answer file ({type(error).__name__}: {error})") from None
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith("judge:"):
                judge = line.split(":", 1)[1].strip() or judge
                continue
            parts = line.split(maxsplit=3)
            if len(parts) < 3:
                raise PreferenceError(f"{path}:{number}: expected 'SHEET A|B confident|slight REASON', got {line!r}")
            answers.append(
                _answer(path, f":{number}", parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else "")
            )
    seen = [answer["sheet"] for answer in answers]
    twice = sorted({sheet for sheet in seen if seen.count(sheet) > 1})
    if twice:
        raise PreferenceError(f"{path}: answered twice: {', '.join(twice)}")
    return judge, answers


def tally_record(key: dict, judged: list[tuple[str, list[dict]]]) -> dict:
    """The tally of ``judged`` (``[(judge, answers)]``) against ``key`` (``make``'s key record)."""
    sheets = key["sheets"]
    judges = [judge for judge, _ in judged]
    if len(set(judges)) != len(judges):
        raise PreferenceError(
            f"two answer files name the same judge: {', '.join(sorted({j for j in judges if judges.count(j) > 1}))}"
        )
    by_peer = {
        peer: {
            "judgements": 0,
            "wins": 0,
            "losses": 0,
            "confident_wins": 0,
            "confident_losses": 0,
            "night_judgements": 0,
            "night_losses": 0,
            "confident_losses_night": 0,
        }
        for peer in key["peers"]
    }
    per_photo: dict[str, dict[str, dict[str, int]]] = {}
    losses, unanswered = [], {}
    for judge, answers in judged:
        unknown = [answer["sheet"] for answer in answers if answer["sheet"] not in sheets]
        if unknown:
            raise PreferenceError(f"judge {judge}: sheets not in the key: {', '.join(unknown[:5])}")
        missing = sorted(set(sheets) - {answer["sheet"] for answer in answers})
        if missing:
            unanswered[judge] = missing
        for answer in answers:
            entry = sheets[answer["sheet"]]
            counts = by_peer[entry["peer"]]
            won = answer["choice"] == entry["ours"]
            confident = answer["confidence"] == "confident"
            counts["judgements"] += 1
            counts["wins" if won else "losses"] += 1
            counts["night_judgements"] += entry["night"]
            if confident:
                counts["confident_wins" if won else "confident_losses"] += 1
            if not won:
                counts["night_losses"] += entry["night"]
                counts["confident_losses_night"] += confident and entry["night"]
                losses.append(
                    {
                        "sheet": answer["sheet"],
                        "photo": entry["photo"],
                        "peer": entry["peer"],
                        "night": entry["night"],
                        "judge": judge,
                        "confidence": answer["confidence"],
                        "reason": answer["reason"],
                    }
                )
            photo = per_photo.setdefault(entry["photo"], {}).setdefault(entry["peer"], {"wins": 0, "losses": 0})
            photo["wins" if won else "losses"] += 1
    for counts in by_peer.values():
        counts["win_percent"] = (
            round(100.0 * counts["wins"] / counts["judgements"], 1) if counts["judgements"] else None
        )
    goals = {}
    for peer, counts in by_peer.items():
        needed = GOAL_WIN_PERCENT.get(peer, GOAL_WIN_PERCENT_OTHERS)
        goals[peer] = {
            "win_percent_needed": needed,
            "met": counts["win_percent"] is not None
            and counts["win_percent"] >= needed
            and counts["confident_losses_night"] == 0,
        }
    return {
        "benchmark": "preference",
        "name": key["name"],
        "ours": key["ours"],
        "seed": key["seed"],
        "photos": len(key["photos"]),
        "night_photos": key["night"],
        "sheets": len(sheets),
        "judges": len(judged),
        "judge_names": judges,
        "answered": sum(len(answers) for _, answers in judged),
        "unanswered": unanswered,
        "definitions": {
            "win": "the judge kept our picture",
            "win_percent": "wins / judgements of that peer, all judges together",
            "confident_losses_night": "losses marked confident on a night-scene photo (the key's night flag)",
            "goals": "win_percent >= win_percent_needed and no confident loss on a night scene",
        },
        "by_peer": by_peer,
        "goals": goals,
        "per_photo": per_photo,
        "losses": losses,
    }


def tally(arguments: argparse.Namespace) -> dict:
    key_path = arguments.key or arguments.folder / arguments.name / "key.json"
    try:
        key = json.loads(key_path.read_text(encoding="utf-8"))
        key["sheets"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PreferenceError(f"{key_path}: cannot read the key ({error})") from None
    record = tally_record(key, [read_answers(path) for path in arguments.answers])
    record["key"] = str(key_path)
    record["machine"] = common.machine(jobs=None)
    output = arguments.output or common.RESULTS / f"preference_{arguments.name}.json"
    common.publish(record, output)
    return record


# ------------------------------------------------------------------------------------------- cli


def brief(arguments: argparse.Namespace) -> None:
    print(BRIEF, end="")
    if arguments.sheets is not None:
        names = sorted(path.stem for path in arguments.sheets.glob("sheet_*.png"))
        if not names:
            raise PreferenceError(f"{arguments.sheets}: no sheet_*.png")
        print("\n" + answers_template(names), end="")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    making = commands.add_parser("make", help="write the sheets, their brief and the key")
    making.add_argument("--name", required=True, help="name of this test (folder and results file)")
    source = making.add_mutually_exclusive_group(required=True)
    source.add_argument("--ours", type=Path, help="folder of our results (rrdnet enhance -o DIR)")
    source.add_argument("--ours-config", help="preset or YAML: run rrdnet enhance with it (cached)")
    making.add_argument(
        "--ours-option",
        action="append",
        default=[],
        help="extra option for rrdnet enhance with --ours-config, e.g. --ours-option=--brightness=0.45",
    )
    making.add_argument("--ours-suffix", default="", help="the --suffix the results in --ours were written with")
    making.add_argument(
        "--photos", type=Path, nargs="+", help="photos or folders (default: ../shared/data/real/{lol_low,dicm})"
    )
    making.add_argument(
        "--peers", default=",".join(DEFAULT_PEERS), help="comma-separated: lime_bm3d, lime, zero_dce_pp, clahe"
    )
    making.add_argument(
        "--night", default=",".join(DEFAULT_NIGHT), help="night scenes, as folder/stem, comma-separated"
    )
    making.add_argument("--seed", type=int, default=0, help="seed of the sheet order and of the sides")
    making.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="where NAME/sheets and NAME/key.json go")
    making.add_argument("--key", type=Path, help="write the key here instead of FOLDER/NAME/key.json")

    briefing = commands.add_parser("brief", help="print the judges' brief")
    briefing.add_argument("--sheets", type=Path, help="also print the answer template for these sheets")

    tallying = commands.add_parser("tally", help="count the judges' answers against the key")
    tallying.add_argument("--name", required=True)
    tallying.add_argument("--answers", type=Path, nargs="+", required=True, help="one answer file per judge")
    tallying.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    tallying.add_argument("--key", type=Path, help="default: FOLDER/NAME/key.json")
    tallying.add_argument("--output", type=Path, help="default: benchmarks/results/preference_NAME.json")
    arguments = parser.parse_args(argv)
    if arguments.command == "make" and arguments.ours_option and arguments.ours is not None:
        parser.error("--ours-option goes with --ours-config")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    try:
        {"make": make, "brief": brief, "tally": tally}[arguments.command](arguments)
    except PreferenceError as error:
        print(f"preference.py: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
