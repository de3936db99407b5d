"""``rrdnet serve``: a local web page to drop photos in, compare before and after, and relight them.

Each photo is fitted once, in a worker process (at most ``Limits.fits`` at a time; the others wait
in a queue), which saves the full-size decomposition and a preview-sized copy of it in the
server's temporary folder. The brightness and denoise sliders then relight the preview copy
(``decomposition.relight``: milliseconds, no refit); while a slider is dragged an even smaller copy
answers, so that the picture follows the hand. A download relights the full-size decomposition and
encodes it like the input, with the CLI's own writer (``images.encode_like``). The server reads
uploads with the CLI's decoders, so a bad file gets the CLI's one-line message; it writes only in
its temporary folder, removed when it stops.

The page is plain HTML, CSS and JavaScript under ``static/``: no build step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import torch
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import decomposition, images, pipeline, runtime, sheet, spawning
from .config import Config
from .errors import ConfigError, InputError, OptimisationError, RRDNetError, UsageError, naming
from .workers import join_or_kill

STATIC = Path(__file__).resolve().parent / "static"
# The slider relights a copy of the decomposition this long on its longer side: about a megapixel,
# what a browser window shows, whatever the photo's size.
PREVIEW_SIDE = 1024
# While a slider is being dragged, a copy of a seventh of the preview's pixels answers (a relight's
# cost grows with the pixel count: its denoising and its search for the light), then the preview
# copy once it is let go.
DRAG_SIDE = 384
THUMBNAIL_SIDE = 240
PREVIEW_QUALITY = 88
# Map names, as `rrdnet enhance --save-maps` names its files.
MAP_NAMES = ("illumination", "illumination_adjusted", "reflectance", "noise", "denoised_away")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# A refused upload is still read to its end (and thrown away), so that the browser, which reads no
# answer before it has sent its request, sees the message; past this the connection is just closed.
DRAIN_BYTES = 1 << 30
# Seconds a worker is given to stop on its own before it is killed.
STOP_GRACE_SECONDS = 3.0
# A worker reports its progress at most this often (a paper-preset fit runs 1000 steps).
STEP_REPORT_SECONDS = 0.1
MEGABYTE = 1_000_000


class NotReady(UsageError):
    """A photo asked for what only a fitted photo has: still queued or fitting, or failed."""


@dataclass(frozen=True)
class Limits:
    """What one server accepts: bytes per upload, pixels per image, fits at once and photos waiting."""

    upload_bytes: int = 50 * MEGABYTE
    pixels: int = 50_000_000
    fits: int = 1
    queue: int = 64

    def __post_init__(self) -> None:
        for name in ("upload_bytes", "pixels", "fits", "queue"):
            if getattr(self, name) < 1:
                raise UsageError(f"serve limit {name}: must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Settings:
    """A photo's light: ``brightness`` (the mean the result aims for; None: the config's gamma) and
    ``denoise`` (``"auto"``, ``"off"`` or a strength; None: the config's)."""

    brightness: Optional[float] = None
    denoise: float | str | None = None

    @classmethod
    def parse(cls, brightness: Optional[str], denoise: Optional[str]) -> Settings:
        """From the page's text values; a bad one is a ``UsageError`` saying which and why."""
        value: Optional[float] = None
        if brightness not in (None, ""):
            try:
                value = float(brightness)
            except ValueError:
                raise UsageError(f"brightness {brightness[:40]!r}: not a number") from None
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise UsageError(f"brightness {brightness[:40]}: must be between 0 and 1")
        strength: float | str | None = None
        if denoise not in (None, ""):
            if denoise in ("auto", "off"):
                strength = denoise
            else:
                try:
                    strength = float(denoise)
                except ValueError:
                    raise UsageError(f"denoise {denoise[:40]!r}: expected 'auto', 'off' or a number") from None
                if not math.isfinite(strength) or strength < 0:
                    raise UsageError(f"denoise {denoise[:40]}: must be 'auto', 'off' or a number from 0")
                if strength == 0:
                    strength = "off"
        return cls(value, strength)

    def relight(self, saved: decomposition.Decomposition, config: Config):
        """``saved`` rendered with these settings (an ``Enhancement``)."""
        if self.brightness is None:
            return decomposition.relight(saved, gamma=config.gamma, denoise=self.denoise)
        return decomposition.relight(saved, brightness=self.brightness, denoise=self.denoise)


def display_name(name: Optional[str]) -> str:
    """The name an upload is shown and refused under: the file's own name, printable, not too long."""
    name = Path((name or "").replace("\\", "/")).name
    name = "".join(character for character in name if character.isprintable()).strip()
    return (name or "photo")[:120]


def output_name(name: str, image_format: str) -> str:
    """``photo.jpg`` -> ``photo_enhanced.jpg`` (the input's extension where it is one we write)."""
    path = Path(name)
    suffix = (
        path.suffix
        if images.FORMATS.get(path.suffix.lower().lstrip(".")) == image_format
        else images.EXTENSIONS[image_format]
    )
    return f"{path.stem}_enhanced{suffix}"


def output_format(source: images.LoadedImage) -> str:
    """The format a result is written in: the input's, PNG where we cannot write that (GIF, ...)."""
    return source.format if source.format in images.EXTENSIONS else "PNG"


def shrink(pixels: torch.Tensor, longer_side: int) -> torch.Tensor:
    """``pixels`` ``(1, C, H, W)`` resized (antialiased) so its longer side is ``longer_side``;
    unchanged when already no larger."""
    height, width = pixels.shape[-2:]
    if max(height, width) <= longer_side:
        return pixels
    scale = longer_side / max(height, width)
    size = (max(pipeline.MIN_SIDE, round(height * scale)), max(pipeline.MIN_SIDE, round(width * scale)))
    smaller = torch.nn.functional.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)
    return smaller.contiguous()


def shrink_decomposition(saved: decomposition.Decomposition, longer_side: int) -> decomposition.Decomposition:
    """A copy of ``saved`` at most ``longer_side`` long, for previews (no alpha, no EXIF)."""
    image = shrink(saved.image, longer_side).clamp(0.0, 1.0)
    if image.shape == saved.image.shape:
        return saved
    # Averages of values in (0, 1] stay there; the clamp only guards the rounding.
    illumination = shrink(saved.illumination, longer_side).clamp(1e-6, 1.0)
    source = images.LoadedImage(
        pixels=image,
        format=saved.source.format,
        grayscale=saved.source.grayscale,
        icc_profile=saved.source.icc_profile,
    )
    return dataclasses.replace(
        saved,
        image=image,
        illumination=illumination,
        reflectance=shrink(saved.reflectance, longer_side),
        noise=shrink(saved.noise, longer_side),
        source=source,
    )


def encode_preview(pixels: torch.Tensor, source: images.LoadedImage, side: Optional[int] = None) -> bytes:
    """``pixels`` ``(1, 3, H, W)`` as a JPEG for the page (shrunk to ``side`` when given)."""
    if side is not None:
        pixels = shrink(pixels, side)
    return images.encode_like(
        pixels, dataclasses.replace(source, alpha=None, exif=None), "JPEG", quality=PREVIEW_QUALITY
    )


def encode_png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def map_picture(enhancement, name: str) -> Image.Image:
    """One of ``MAP_NAMES`` of ``enhancement`` as a picture; the signed maps (noise, what the
    denoising removed) with grey for zero, as on the contact sheet."""
    if name == "illumination":
        pixels = enhancement.illumination
    elif name == "illumination_adjusted":
        pixels = enhancement.adjusted_illumination
    elif name == "reflectance":
        pixels = enhancement.reflectance_for("the reflectance map")
    elif name == "noise":
        pixels = sheet.noise_for_viewing(enhancement.noise)[0]
    else:
        pixels = sheet.noise_for_viewing(enhancement.removed_for("the maps"))[0]
    return images.to_pil(pixels).convert("RGB")


def header_pixels(data: bytes) -> Optional[float]:
    """The pixel count an image's header states, read with the decoders the CLI allows and nothing
    decoded: ``inf`` past Pillow's own decompression-bomb limit, None when no header can be read
    (decoding then gives the CLI's message)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=images.READ_FORMATS) as opened:
                width, height = opened.size
                return float(width * height)
    except Image.DecompressionBombError:
        return math.inf
    except Exception:
        return None


def _pixels(count: float) -> str:
    return f"{count / 1e6:.3g} megapixels" if count >= 100_000 else f"{int(count)} pixels"


# --------------------------------------------------------------------------------------- fitting


def _fit(connection: Connection, task: dict) -> None:
    """Fit one photo in this worker and save what the server needs; reports go to ``connection``."""
    name = task["name"]
    folder = Path(task["folder"])
    config: Config = task["config"]
    last_report = 0.0

    def on_step(step: int, loss: float) -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report >= STEP_REPORT_SECONDS or step == config.iterations:
            last_report = now
            connection.send(("step", step))

    started = time.perf_counter()
    try:
        loaded = images.decode_image(Path(task["source"]).read_bytes(), name)
        enhancement = pipeline.enhance(loaded.pixels, config, on_step=on_step, reflectance=True)
        if not torch.isfinite(enhancement.result).all():
            raise OptimisationError("the result holds NaN or infinite values")
        saved = decomposition.Decomposition.from_enhancement(enhancement, loaded, config, name)
        del enhancement
        decomposition.save(saved, folder / "decomposition.npz")
        preview = shrink_decomposition(saved, task["preview_side"])
        if preview is not saved:  # else the server reads the decomposition itself
            decomposition.save(preview, folder / "preview.npz")
    except RRDNetError as error:
        connection.send(("failed", naming(name, str(error))))
        return
    except MemoryError:
        connection.send(("failed", f"{name}: out of memory"))
        return
    except Exception as error:  # a bug fails the photo, not the server
        connection.send(("failed", f"{name}: internal error: {type(error).__name__}: {error}"))
        return
    connection.send(("done", time.perf_counter() - started))


def _warm_up(config: Config) -> None:
    """One tiny fit, so that the first photo does not pay for what a first call loads (the learned
    weights, the denoiser's modules, torch's kernels). Best effort: a real fit reports any error."""
    try:
        pipeline.enhance(torch.full((1, 3, 16, 16), 0.1), config.replace(iterations=1), reflectance=True)
    except Exception:
        pass


def _warm_relight(config: Config) -> None:
    """The same for the server's relights, on a made-up 16 x 16 decomposition."""
    image = torch.full((1, 3, 16, 16), 0.1)
    saved = decomposition.Decomposition(
        image=image,
        illumination=torch.full((1, 1, 16, 16), 0.2),
        reflectance=image * 5,
        noise=torch.zeros_like(image),
        losses=torch.zeros(2, 5).double().numpy(),
        gamma=0.5,
        target_brightness=None,
        config_yaml=config.to_yaml(),
        source=images.LoadedImage(pixels=image, format="PNG"),
    )
    try:
        Settings().relight(saved, config)
        Settings(brightness=0.5, denoise="off").relight(saved, config)
    except Exception:
        pass


def _worker_main(connection: Connection, threads: int) -> None:
    """One fit process: photos come in over ``connection`` until ``None``; Ctrl-C is the server's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the server while starting us
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    torch.set_num_threads(threads)
    runtime.tune_allocator()
    try:
        _warm_up(connection.recv())
        while True:
            task = connection.recv()
            if task is None:
                break
            _fit(connection, task)
    except (EOFError, OSError):
        pass  # the server is gone
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skips torch's slow teardown: nothing is left to save


class _Worker:
    def __init__(self, context, threads: int, config: Config) -> None:
        self.connection, child = context.Pipe()
        # Spawned: its imports through spawning.run.
        arguments = (__name__, _worker_main.__name__, child, threads)
        self.process = context.Process(target=spawning.run, args=arguments, daemon=True)
        # Started with SIGINT blocked (the new process inherits the mask), so that a Ctrl-C during
        # its start-up prints no traceback there; once running it ignores SIGINT.
        if hasattr(signal, "pthread_sigmask"):
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self.process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        else:
            self.process.start()
        child.close()
        self.connection.send(config)  # to warm up with
        self.photo: Optional[Photo] = None

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except OSError:
            pass
        if self.photo is not None and self.process.is_alive():
            self.process.terminate()

    def wait(self) -> None:
        join_or_kill(self.process, STOP_GRACE_SECONDS)
        self.connection.close()


def _death_message(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            return f"the fit process was killed by {signal.Signals(-code).name} (out of memory?)"
        except ValueError:
            pass
    return f"the fit process ended unexpectedly (exit code {code})"


@dataclass(eq=False)
class Photo:
    """One upload and where it stands: ``queued``, ``fitting``, ``done`` or ``failed``."""

    id: str
    name: str
    folder: Path
    source: Path
    width: int
    height: int
    uploaded: float
    status: str = "queued"
    step: int = 0
    error: Optional[str] = None
    started: Optional[float] = None
    seconds: Optional[float] = None
    thumbnail: bytes = b""
    preview: Optional[decomposition.Decomposition] = field(default=None, repr=False)
    drag: Optional[decomposition.Decomposition] = field(default=None, repr=False)
    before: bytes = b""
    light: Optional[str] = None
    brightness: Optional[float] = None


class Studio:
    """The server's state: its temporary folder, the photos and the processes that fit them.

    Usable without the web layer (the tests drive it through the app). ``close()`` stops the
    workers and removes the folder; it is safe to call more than once.
    """

    def __init__(self, config: Config, limits: Limits = Limits(), threads: Optional[int] = None) -> None:
        self.config = config
        self.limits = limits
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.threads = threads or max(1, cores // limits.fits)
        self.folder = Path(tempfile.mkdtemp(prefix="rrdnet-serve-"))
        self.photos: dict[str, Photo] = {}
        self.pending: deque[Photo] = deque()
        self.lock = threading.Lock()
        self.renders: OrderedDict[tuple, Any] = OrderedDict()
        # Full-size renders (downloads, zips) hold gigabytes for a large photo: one at a time.
        self._full_size_slot = threading.Semaphore(1)
        self.closed = False
        self._context = multiprocessing.get_context("spawn")
        self._wake_receive, self._wake_send = self._context.Pipe(duplex=False)
        self.workers: list[_Worker] = []
        try:
            self.workers = [_Worker(self._context, self.threads, config) for _ in range(limits.fits)]
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._run, name="rrdnet-fits", daemon=True)
        self._thread.start()
        threading.Thread(target=_warm_relight, args=(config,), name="rrdnet-warm-up", daemon=True).start()

    # ---------------------------------------------------------------------------- uploads

    def add(self, name: str, data: bytes) -> Photo:
        """Check and queue an upload; ``InputError`` (bad image) or ``UsageError`` (queue full)."""
        name = display_name(name)
        pixels = header_pixels(data)
        if pixels is not None and pixels > self.limits.pixels:
            raise self._too_large(name, pixels)
        loaded = images.decode_image(data, name)
        width, height = loaded.size
        if width * height > self.limits.pixels:  # a header that under-stated the size
            raise self._too_large(name, width * height)
        thumbnail = encode_preview(loaded.pixels, loaded, THUMBNAIL_SIDE)
        del loaded
        with self.lock:
            if self.closed:
                raise UsageError("the server is stopping")
            waiting = sum(photo.status in ("queued", "fitting") for photo in self.photos.values())
            if waiting >= self.limits.queue + self.limits.fits:
                raise UsageError(f"{name}: the queue is full ({waiting} photos waiting); try again when some are done")
            identifier = secrets.token_hex(8)
            folder = self.folder / identifier
            folder.mkdir()
            source = folder / "input"
            images.write_atomic(source, data)
            photo = Photo(identifier, name, folder, source, width, height, time.time(), thumbnail=thumbnail)
            self.photos[identifier] = photo
            self.pending.append(photo)
        self._wake()
        return photo

    def _too_large(self, name: str, pixels: float) -> InputError:
        stated = "more pixels than" if math.isinf(pixels) else f"{_pixels(pixels)}, more than"
        return InputError(f"{name}: image has {stated} this server's limit of {_pixels(self.limits.pixels)}; refused")

    def _wake(self) -> None:
        try:
            self._wake_send.send_bytes(b"")
        except OSError:
            pass

    # ---------------------------------------------------------------------------- fitting

    def _run(self) -> None:
        """Hand queued photos to idle workers and take in what the workers report."""
        while not self.closed:
            self._dispatch()
            busy = [worker for worker in self.workers if worker.photo is not None]
            waitables = (
                [self._wake_receive]
                + [worker.connection for worker in busy]
                + [worker.process.sentinel for worker in busy]
            )
            try:
                ready = wait(waitables, timeout=1.0)
            except OSError:
                return  # closed under us
            if self.closed:
                return
            if self._wake_receive in ready:
                with contextlib.suppress(EOFError, OSError):
                    while self._wake_receive.poll():
                        self._wake_receive.recv_bytes()
            for index, worker in enumerate(list(self.workers)):
                if worker.photo is None:
                    continue
                if worker.connection in ready:
                    self._receive(worker)
                if worker.photo is not None and worker.process.sentinel in ready and not worker.connection.poll():
                    photo, worker.photo = worker.photo, None
                    worker.wait()
                    self._fail(photo, f"{photo.name}: {_death_message(worker.process)}")
                    if not self.closed:
                        self.workers[index] = _Worker(self._context, self.threads, self.config)

    def _dispatch(self) -> None:
        for worker in self.workers:
            if worker.photo is not None:
                continue
            with self.lock:
                if not self.pending:
                    return
                photo = self.pending.popleft()
                photo.status, photo.started = "fitting", time.time()
            worker.photo = photo
            task = {
                "name": photo.name,
                "source": str(photo.source),
                "folder": str(photo.folder),
                "config": self.config,
                "preview_side": PREVIEW_SIDE,
            }
            try:
                worker.connection.send(task)
            except OSError:
                pass  # it died: its sentinel says so

    def _receive(self, worker: _Worker) -> None:
        photo = worker.photo
        if photo is None:
            return
        try:
            while worker.photo is not None and worker.connection.poll():
                kind, value = worker.connection.recv()
                if kind == "step":
                    photo.step = value
                elif kind == "failed":
                    worker.photo = None
                    self._fail(photo, value)
                else:
                    worker.photo = None
                    self._finish(photo, value)
        except (EOFError, OSError):
            pass  # it died: its sentinel says so

    def _fail(self, photo: Photo, message: str) -> None:
        with self.lock:
            photo.status, photo.error = "failed", message
        shutil.rmtree(photo.folder, ignore_errors=True)

    def _finish(self, photo: Photo, seconds: float) -> None:
        """Load the preview copy the worker saved and render the first preview."""
        try:
            smaller = photo.folder / "preview.npz"
            preview = decomposition.load(smaller if smaller.exists() else photo.folder / "decomposition.npz")
            drag = shrink_decomposition(preview, DRAG_SIDE)
            enhancement = Settings().relight(preview, self.config)
            before = encode_preview(preview.image, preview.source)
            thumbnail = encode_preview(enhancement.result, preview.source, THUMBNAIL_SIDE)
        except (RRDNetError, OSError, MemoryError) as error:
            self._fail(photo, naming(photo.name, str(error)))
            return
        with self.lock:
            photo.preview, photo.drag, photo.before, photo.thumbnail = preview, drag, before, thumbnail
            photo.light, photo.brightness = enhancement.light.describe(), enhancement.brightness
            photo.seconds, photo.step = seconds, len(preview.losses) - 1
            photo.status = "done"

    # ---------------------------------------------------------------------------- reading

    def photo(self, identifier: str, *, done: bool = False) -> Photo:
        """The photo ``identifier``: ``LookupError`` when unknown, ``UsageError`` when ``done`` is
        asked and it is not (yet)."""
        with self.lock:
            photo = self.photos.get(identifier)
        if photo is None:
            raise LookupError(identifier)
        if done and photo.status != "done":
            raise NotReady(photo.error or f"{photo.name}: not ready yet ({photo.status})")
        return photo

    def describe(self, photo: Photo) -> dict[str, Any]:
        with self.lock:
            position = None
            if photo.status == "queued":
                position = next((index for index, waiting in enumerate(self.pending) if waiting is photo), None)
            return {
                "id": photo.id,
                "name": photo.name,
                "status": photo.status,
                "step": photo.step,
                "steps": self.config.iterations,
                "queue_position": position,
                "error": photo.error,
                "width": photo.width,
                "height": photo.height,
                "seconds": None if photo.seconds is None else round(photo.seconds, 3),
                "light": photo.light,
                "brightness": photo.brightness,
            }

    def render(self, photo: Photo, settings: Settings, size: str = "preview"):
        """The relit preview (``size`` ``"preview"`` or the smaller ``"drag"``), cached per settings."""
        key = (photo.id, settings, size)
        with self.lock:
            if key in self.renders:
                self.renders.move_to_end(key)
                return self.renders[key]
        saved = photo.drag if size == "drag" else photo.preview
        if saved is None:
            raise NotReady(f"{photo.name}: not ready yet ({photo.status})")
        enhancement = settings.relight(saved, self.config)
        with self.lock:
            self.renders[key] = enhancement
            while len(self.renders) > 8:
                self.renders.popitem(last=False)
        return enhancement

    def full_size(self, photo: Photo, settings: Settings) -> tuple[str, bytes]:
        """The result at full size, encoded like the input: ``(file name, bytes)``."""
        with self._full_size_slot:
            saved = decomposition.load(photo.folder / "decomposition.npz")
            # Decoded again rather than taken from the decomposition: the writer needs all the
            # source's properties (its bit depth too), exactly as the CLI has them.
            source = images.decode_image(photo.source.read_bytes(), photo.name)
            result = settings.relight(saved, self.config).result
            del saved
            image_format = output_format(source)
            data = images.encode_like(result, source, image_format)
        return output_name(photo.name, image_format), data

    def zip_file(self, requests: list[tuple[Photo, Settings]]) -> Path:
        """The full-size results of ``requests``, in a zip in the temporary folder."""
        path = self.folder / f"batch-{secrets.token_hex(6)}.zip"
        taken: set[str] = set()
        try:
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
                for photo, settings in requests:
                    name, data = self.full_size(photo, settings)
                    stem, suffix = os.path.splitext(name)
                    number = 2
                    while name in taken:
                        name, number = f"{stem}_{number}{suffix}", number + 1
                    taken.add(name)
                    archive.writestr(name, data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    # ---------------------------------------------------------------------------- stopping

    def close(self) -> None:
        """Stop the workers (a fit in progress is abandoned) and remove the temporary folder."""
        with self.lock:
            already, self.closed = self.closed, True
            self.pending.clear()
        if not already:
            self._wake()
            thread = getattr(self, "_thread", None)
            if thread is not None and thread is not threading.current_thread():
                thread.join(10)
            for worker in self.workers:
                worker.stop()
            for worker in self.workers:
                worker.wait()
            for end in (self._wake_send, self._wake_receive):
                end.close()
        shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------------------- the app


def enhancement_source(photo: Photo) -> images.LoadedImage:
    """What a preview of ``photo`` is encoded like (its gray or colour, its ICC profile)."""
    if photo.preview is None:
        raise NotReady(f"{photo.name}: not ready yet ({photo.status})")
    return photo.preview.source


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _attachment(name: str) -> str:
    fallback = "".join(character if character.isascii() and character not in '"\\' else "_" for character in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


def _settings(request: Request) -> Settings:
    return Settings.parse(request.query_params.get("brightness"), request.query_params.get("denoise"))


def _handled(handler: Callable) -> Callable:
    """Turn the package's errors into one-line JSON answers, as the CLI turns them into lines."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except LookupError:
            return _error(404, "no such photo (the server may have restarted)")
        except NotReady as error:
            return _error(409, str(error))
        except (UsageError, ConfigError) as error:
            return _error(400, str(error))
        except InputError as error:
            return _error(422, str(error))
        except RRDNetError as error:
            return _error(500, str(error))
        except MemoryError:
            return _error(507, "out of memory")

    return endpoint


def host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``::1``."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class _HostCheck:
    """Answer only requests addressed to one of ``allowed`` host names (403 otherwise)."""

    def __init__(self, app, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = host_name(headers.get(b"host", b"").decode("latin-1")).lower()
            if host not in self.allowed:
                response = _error(403, f"this server answers to {', '.join(sorted(self.allowed))} only")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(studio: Studio, allowed_hosts: Optional[list[str]] = None) -> Starlette:
    """The web app over ``studio``; it closes the studio when it shuts down.

    ``allowed_hosts``: the Host names to answer (None: any). A server on the loopback answers only
    its loopback names, so that no web page elsewhere can reach it by rebinding a name of its own.
    """
    config, limits = studio.config, studio.limits

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def info(request: Request) -> Response:
        return JSONResponse(
            {
                "upload_bytes": limits.upload_bytes,
                "pixels": limits.pixels,
                "fits": limits.fits,
                "queue": limits.queue,
                "iterations": config.iterations,
                "gamma": config.gamma,
                "brightness": config.brightness,
                "denoise": config.denoise,
                "preview_side": PREVIEW_SIDE,
                "drag_side": DRAG_SIDE,
            }
        )

    async def upload(request: Request) -> Response:
        name = display_name(request.query_params.get("name"))
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            return _error(403, "uploads are taken from this server's own page only")
        limit = limits.upload_bytes
        refusal = f"{name}: file is larger than this server's upload limit of {limit / MEGABYTE:g} MB; refused"
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > DRAIN_BYTES:
            return _error(413, refusal)
        received = bytearray()
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total <= limit:
                received += chunk
            elif received:
                received = bytearray()  # over the limit: read on, keep nothing
            if total > DRAIN_BYTES:
                break
        if total > limit:
            return _error(413, refusal)
        photo = await run_in_threadpool(studio.add, name, bytes(received))
        return JSONResponse(studio.describe(photo), status_code=201)

    async def status(request: Request) -> Response:
        identifiers = [part for part in request.query_params.get("ids", "").split(",") if part]
        found = []
        for identifier in identifiers[:1000]:
            with contextlib.suppress(LookupError):
                found.append(studio.describe(studio.photo(identifier)))
        return JSONResponse({"photos": found})

    async def one(request: Request) -> Response:
        return JSONResponse(studio.describe(studio.photo(request.path_params["id"])))

    async def thumbnail(request: Request) -> Response:
        photo = studio.photo(request.path_params["id"])
        if not photo.thumbnail:
            return _error(404, f"{photo.name}: no thumbnail")
        return Response(photo.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    async def before(request: Request) -> Response:
        photo = studio.photo(request.path_params["id"], done=True)
        return Response(photo.before, media_type="image/jpeg")

    async def preview(request: Request) -> Response:
        photo = studio.photo(request.path_params["id"], done=True)
        settings = _settings(request)
        size = "drag" if request.query_params.get("size") == "drag" else "preview"

        def work() -> tuple[bytes, Any]:
            started = time.perf_counter()
            enhancement = studio.render(photo, settings, size)
            data = encode_preview(enhancement.result, enhancement_source(photo))
            return data, (enhancement.light, time.perf_counter() - started)

        data, (light, seconds) = await run_in_threadpool(work)
        return Response(
            data,
            media_type="image/jpeg",
            headers={
                "X-Light": light.describe(),
                "X-Brightness": f"{light.brightness:.4f}",
                "X-Render-Ms": f"{seconds * 1000:.1f}",
                "Cache-Control": "no-store",
            },
        )

    async def map_image(request: Request) -> Response:
        photo = studio.photo(request.path_params["id"], done=True)
        name = request.path_params["name"]
        if name not in MAP_NAMES:
            return _error(404, f"no map '{name[:40]}' (maps: {', '.join(MAP_NAMES)})")
        settings = _settings(request)

        def work() -> bytes:
            picture = map_picture(studio.render(photo, settings), name)
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
            return buffer.getvalue()

        return Response(await run_in_threadpool(work), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def contact_sheet(request: Request) -> Response:
        photo = studio.photo(request.path_params["id"], done=True)
        settings = _settings(request)

        def work() -> bytes:
            enhancement = studio.render(photo, settings)
            return encode_png(sheet.contact_sheet(enhancement, sheet.sheet_title(photo.name, enhancement)))

        return Response(await run_in_threadpool(work), media_type="image/png", headers={"Cache-Control": "no-store"})

    async def download(request: Request) -> Response:
        photo = studio.photo(request.path_params["id"], done=True)
        settings = _settings(request)
        name, data = await run_in_threadpool(studio.full_size, photo, settings)
        image_format = images.FORMATS[Path(name).suffix.lower().lstrip(".")]
        return Response(
            data,
            media_type=Image.MIME.get(image_format, "application/octet-stream"),
            headers={"Content-Disposition": _attachment(name)},
        )

    async def zip_download(request: Request) -> Response:
        # ?p=ID&p=ID:BRIGHTNESS:DENOISE...: each photo with its own light (empty: the config's).
        requests = []
        for item in request.query_params.getlist("p")[:1000]:
            identifier, _, rest = item.partition(":")
            brightness, _, denoise = rest.partition(":")
            photo = studio.photo(identifier)
            if photo.status == "done":
                requests.append((photo, Settings.parse(brightness, denoise)))
        if not requests:
            return _error(409, "none of these photos is ready")
        path = await run_in_threadpool(studio.zip_file, requests)
        return FileResponse(
            path,
            media_type="application/zip",
            filename="rrdnet-enhanced.zip",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        try:
            yield
        finally:
            await run_in_threadpool(studio.close)

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/photos", _handled(upload), methods=["POST"]),
        Route("/api/photos", _handled(status)),
        Route("/api/photos/{id}", _handled(one)),
        Route("/api/photos/{id}/thumbnail.jpg", _handled(thumbnail)),
        Route("/api/photos/{id}/before.jpg", _handled(before)),
        Route("/api/photos/{id}/preview.jpg", _handled(preview)),
        Route("/api/photos/{id}/maps/{name}.jpg", _handled(map_image)),
        Route("/api/photos/{id}/sheet.png", _handled(contact_sheet)),
        Route("/api/photos/{id}/download", _handled(download)),
        Route("/api/zip", _handled(zip_download)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(_HostCheck, allowed=frozenset(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


# --------------------------------------------------------------------------------------- serving


def is_loopback(host: str) -> bool:
    return host.strip("[]") in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); ``UsageError`` when it cannot be had."""
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise UsageError(f"--host {host}: cannot use this address ({error.strerror})") from None
    family, kind, protocol, _, address = addresses[0]
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise UsageError(f"{host}:{port}: cannot listen ({error.strerror or error})") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits = Limits(),
    threads: Optional[int] = None,
    on_ready: Optional[Callable[[str], None]] = None,
) -> None:
    """Run the page until Ctrl-C (or SIGTERM); the temporary folder is removed on the way out.

    ``on_ready(url)`` is called once the server listens and the fit processes have started.
    """
    sock = listen(host, port)
    studio = None
    try:
        studio = Studio(config, limits, threads)
        app = create_app(studio, list(LOOPBACK_HOSTS) if is_loopback(host) else None)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=3,
            )
        )
        if on_ready is not None:
            on_ready(url_of(sock))
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    finally:
        sock.close()
        if studio is not None:
            studio.close()
