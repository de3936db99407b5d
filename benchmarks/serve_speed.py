"""rrdnet serve against its targets, measured through the real command over HTTP, as the page talks to it.

- slider relight latency on a 12-megapixel photo (the drag-sized copy while the slider moves, the
  preview copy once it is let go): round trip of GET preview.jpg, from request to the last byte;
- the time a 768x512 photo takes to appear (upload, fit, first preview fetched, polling as the page
  does) against `rrdnet enhance` on the same photo, run just before in the same run;
- a 60 MB upload and a 200-megapixel image (a real PNG, compressed to a few hundred kilobytes) sent
  while the 12-megapixel photo is being fitted: refused with a message, and the server answers
  meanwhile (its latency is recorded);
- two tabs uploading at once: both photos fitted and shown.

The 12-megapixel photo is the 768x512 one enlarged (Lanczos) to 4240x2832 and saved as a JPEG: its
fit takes about as long as a camera photo's. Prints one JSON line and writes
benchmarks/results/serve_speed.json.

    .venv/bin/python benchmarks/serve_speed.py                 # about two minutes on 2 cores
    .venv/bin/python benchmarks/serve_speed.py --moves 10      # fewer slider moves
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from common import DEFAULT_DATA, REPO, RESULTS, machine, publish

# The page polls the photo's state this often (rrdnet_cli/static/app.js, POLL_MS).
POLL_SECONDS = 0.25
LARGE_SIZE = (4240, 2832)  # 12.0 megapixels
BOMB_SIZE = (16330, 12248)  # 200.0 megapixels


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA / "synthetic" / "low", help="folder of 768x512 photos"
    )
    parser.add_argument("--moves", type=int, default=20, help="slider moves measured per kind")
    parser.add_argument("--cli-runs", type=int, default=2, help="runs of rrdnet enhance for the baseline")
    parser.add_argument("--output", type=Path, default=RESULTS / "serve_speed.json")
    return parser.parse_args(argv)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rrdnet_cli", *args]


def environment(temporary: Path) -> dict[str, str]:
    variables = dict(os.environ)
    variables["TMPDIR"] = str(temporary)
    variables["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), variables.get("PYTHONPATH")]))
    return variables


def request(url: str, data: bytes | None = None, timeout: float = 600) -> tuple[int, bytes, Any, float]:
    """``(status, body, headers, seconds)`` of one request; an HTTP error is an answer too."""
    started = time.perf_counter()
    call = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        call.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            body, status, headers = answer.read(), answer.status, answer.headers
    except urllib.error.HTTPError as error:
        body, status, headers = error.read(), error.code, error.headers
    return status, body, headers, time.perf_counter() - started


def upload(base: str, data: bytes, name: str) -> dict:
    status, body, _, _ = request(f"{base}api/photos?name={name}", data)
    if status != 201:
        raise SystemExit(f"upload of {name} refused: {body.decode()}")
    return json.loads(body)


def appear(base: str, data: bytes, name: str) -> float:
    """Seconds from the upload's start to the first preview received, polling as the page does."""
    started = time.perf_counter()
    photo = upload(base, data, name)
    while photo["status"] not in ("done", "failed"):
        time.sleep(POLL_SECONDS)
        photo = json.loads(request(f"{base}api/photos/{photo['id']}")[1])
    if photo["status"] != "done":
        raise SystemExit(f"{name} failed: {photo['error']}")
    for part in ("before.jpg", "preview.jpg"):
        status, _, _, _ = request(f"{base}api/photos/{photo['id']}/{part}")
        assert status == 200, part
    return time.perf_counter() - started


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of ``width`` x ``height`` black pixels, compressed as it is written."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    parts = [compressor.compress(row) for _ in range(height)]
    data = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[max(0, round(0.9 * len(ordered)) - 1)] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "count": len(ordered),
    }


def slider(base: str, identifier: str, size: str, moves: int, denoise: str | None) -> tuple[dict, dict]:
    """Round trips (and the server's own render times) of ``moves`` brightness moves."""
    trips, renders = [], []
    for move in range(moves):
        brightness = 0.3 + 0.4 * (move % 10) / 9  # 0.30 ... 0.70, each value new to the cache
        brightness += 0.001 * (move // 10)
        url = f"{base}api/photos/{identifier}/preview.jpg?size={size}&brightness={brightness:.3f}"
        if denoise is not None:
            url += f"&denoise={denoise}"
        status, _, headers, seconds = request(url)
        assert status == 200, url
        trips.append(seconds)
        renders.append(float(headers["X-Render-Ms"]) / 1000)
    return summary(trips), summary(renders)


def main(argv=None) -> dict:
    arguments = parse_arguments(argv)
    photos = sorted(path for path in arguments.data.iterdir() if path.suffix == ".png")[:3]
    record: dict = {"benchmark": "serve_speed", "machine": machine(jobs=1), "photo": photos[0].name}
    with tempfile.TemporaryDirectory(prefix="rrdnet-serve-bench-") as folder:
        folder_path = Path(folder)
        temporary = folder_path / "tmp"
        temporary.mkdir()
        variables = environment(temporary)

        # The CLI's time for the 768x512 photo: a whole command, start-up included, as a user runs it.
        cli_seconds = []
        for run in range(arguments.cli_runs):
            started = time.perf_counter()
            subprocess.run(
                command("enhance", str(photos[0]), "-o", str(folder_path / f"cli{run}"), "-q"),
                check=True,
                env=variables,
            )
            cli_seconds.append(time.perf_counter() - started)

        large = folder_path / "large.jpg"
        with Image.open(photos[0]) as opened:
            opened.convert("RGB").resize(LARGE_SIZE, Image.LANCZOS).save(large, quality=92)
        bomb = png_of_zeros(*BOMB_SIZE)

        started = time.perf_counter()
        server = subprocess.Popen(command("serve", "--port", "0"), env=variables, stderr=subprocess.PIPE, text=True)
        try:
            line = server.stderr.readline()
            match = re.search(r"serving on (\S+)", line)
            if not match:
                raise SystemExit(f"the server did not start: {line}{server.stderr.read()}")
            base = match.group(1)
            record["server_start_seconds"] = round(time.perf_counter() - started, 2)

            appear_seconds = [appear(base, photos[0].read_bytes(), photos[0].name) for _ in range(2)]
            record["appear_768x512"] = {
                "serve_seconds": [round(value, 2) for value in appear_seconds],
                "cli_seconds": [round(value, 2) for value in cli_seconds],
                "serve_minus_cli_seconds": round(min(appear_seconds) - min(cli_seconds), 2),
                "target": "serve <= cli + 0.5 s",
            }

            # Two tabs at once: two photos sent at the same moment, both fitted and shown.
            tabs: dict[str, float] = {}

            def tab(path: Path) -> None:
                tabs[path.name] = round(appear(base, path.read_bytes(), path.name), 2)

            threads = [threading.Thread(target=tab, args=(path,)) for path in photos[1:3]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            record["two_tabs_at_once_seconds"] = tabs

            # The 12-megapixel photo; while it is fitted, the refusals and the server's answers.
            started = time.perf_counter()
            photo = upload(base, large.read_bytes(), large.name)
            refusals = {}
            for name, data in (("60MB.jpg", os.urandom(60_000_000)), ("200MP.png", bomb)):
                status, body, _, seconds = request(f"{base}api/photos?name={name}", data)
                refusals[name] = {
                    "status": status,
                    "message": json.loads(body)["error"],
                    "seconds": round(seconds, 3),
                    "bytes_sent": len(data),
                }
            record["refused_during_a_fit"] = refusals
            answers = []
            state = photo
            while state["status"] not in ("done", "failed"):
                time.sleep(POLL_SECONDS)
                status, body, _, seconds = request(f"{base}api/photos/{photo['id']}")
                answers.append(seconds)
                state = json.loads(body)
            if state["status"] != "done":
                raise SystemExit(f"the 12 MP photo failed: {state['error']}")
            record["status_answers_during_the_fit"] = summary(answers)
            record["large"] = {
                "size": list(LARGE_SIZE),
                "upload_to_done_seconds": round(time.perf_counter() - started, 2),
                "fit_seconds": state["seconds"],
            }
            identifier = photo["id"]
            request(f"{base}api/photos/{identifier}/preview.jpg")  # the page's first preview
            latency = {}
            for size in ("drag", "preview"):
                for denoise in (None, "off"):
                    trips, renders = slider(base, identifier, size, arguments.moves, denoise)
                    key = f"{size}_denoise_{denoise or 'default'}"
                    latency[key] = {"round_trip": trips, "server_render": renders}
            record["slider_12mp"] = latency
            record["slider_12mp"]["target"] = "a drag move's round trip <= 150 ms (p90)"
            status, body, headers, seconds = request(f"{base}api/photos/{identifier}/download?brightness=0.5")
            with Image.open(io.BytesIO(body)) as downloaded:
                record["large"]["download"] = {
                    "seconds": round(seconds, 2),
                    "format": downloaded.format,
                    "size": list(downloaded.size),
                }
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        record["stopped"] = {"exit_code": server.returncode, "temporary_files_left": len(list(temporary.iterdir()))}

    drag = record["slider_12mp"]["drag_denoise_default"]["round_trip"]
    record["targets_met"] = {
        "slider_12mp_drag_p90_within_150_ms": drag["p90_ms"] <= 150,
        "appear_within_cli_plus_half_a_second": record["appear_768x512"]["serve_minus_cli_seconds"] <= 0.5,
        "refusals": [value["status"] for value in record["refused_during_a_fit"].values()] == [413, 422],
        "two_tabs_served": len(record["two_tabs_at_once_seconds"]) == 2,
    }
    publish(record, arguments.output)
    return record


if __name__ == "__main__":
    main()
