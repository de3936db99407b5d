"""rrdnet serve: the web API through Starlette's test client, and the command itself.

One server (one fit process) serves the whole module: tiny images, two Adam steps. The page in a
real browser is tests/test_serve_page.py.
"""

import io
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from helpers import DEFAULT_FAST, cli_command, cli_environment, crafted_png_header, dark_array, run

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'rrdnet-cli[serve]'")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2 (the test extra)")

from starlette.testclient import TestClient  # noqa: E402

from rrdnet_cli import images, load_config  # noqa: E402
from rrdnet_cli.errors import InputError, UsageError  # noqa: E402
from rrdnet_cli.serve import Limits, Settings, Studio, create_app, display_name, host_name, output_name  # noqa: E402

UPLOAD_LIMIT = 200_000
PIXEL_LIMIT = 6_000  # a 64 x 64 photo is within it; 100 x 100 is not
FIT_TIMEOUT = 120


def config():
    return load_config(None, iterations=2, device="cpu")


def encoded(array: np.ndarray, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    studio = Studio(config(), Limits(upload_bytes=UPLOAD_LIMIT, pixels=PIXEL_LIMIT, fits=1, queue=8), threads=1)
    with TestClient(create_app(studio)) as client:
        yield client, studio
    assert not studio.folder.exists(), "the temporary folder outlived the server"


def upload(client, data: bytes, name: str = "dark.png"):
    return client.post("/api/photos", params={"name": name}, content=data)


def wait_done(client, identifier: str) -> dict:
    deadline = time.monotonic() + FIT_TIMEOUT
    while time.monotonic() < deadline:
        photo = client.get(f"/api/photos/{identifier}").json()
        if photo["status"] in ("done", "failed"):
            return photo
        time.sleep(0.05)
    raise AssertionError(f"photo {identifier} not done after {FIT_TIMEOUT} s: {photo}")


def fitted(client, data: bytes, name: str = "dark.png") -> dict:
    response = upload(client, data, name)
    assert response.status_code == 201, response.text
    photo = wait_done(client, response.json()["id"])
    assert photo["status"] == "done", photo
    return photo


def picture(response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def mean_of(response) -> float:
    return float(np.asarray(picture(response).convert("RGB"), dtype=np.float64).mean())


# ------------------------------------------------------------------------------------ the API


def test_upload_is_queued_then_fitted_with_progress(server):
    client, _ = server
    response = upload(client, encoded(dark_array(40, 48)))
    assert response.status_code == 201
    photo = response.json()
    assert photo["status"] in ("queued", "fitting") and photo["name"] == "dark.png"
    assert (photo["width"], photo["height"]) == (48, 40)
    done = wait_done(client, photo["id"])
    assert done["status"] == "done" and done["step"] == done["steps"] == 2
    assert done["seconds"] > 0 and "brightness" in done["light"]
    listed = client.get("/api/photos", params={"ids": f"{photo['id']},unknown"}).json()["photos"]
    assert [item["id"] for item in listed] == [photo["id"]]
    assert picture(client.get(f"/api/photos/{photo['id']}/thumbnail.jpg")).format == "JPEG"


def test_relight_changes_the_preview_without_a_refit(server):
    client, _ = server
    photo = fitted(client, encoded(dark_array(40, 48, seed=1)))
    url = f"/api/photos/{photo['id']}/preview.jpg"
    dim = client.get(url, params={"brightness": 0.2})
    bright = client.get(url, params={"brightness": 0.7})
    assert mean_of(bright) > mean_of(dim) + 40
    assert float(bright.headers["X-Brightness"]) == pytest.approx(0.7, abs=0.05)
    # The drag-sized copy answers too (at this size, the same pixels), and denoise strengths apply.
    assert picture(client.get(url, params={"brightness": 0.7, "size": "drag"})).size == (48, 40)
    off = client.get(url, params={"brightness": 0.7, "denoise": "off"}).content
    strong = client.get(url, params={"brightness": 0.7, "denoise": 4}).content
    assert off != strong
    before = picture(client.get(f"/api/photos/{photo['id']}/before.jpg"))
    assert float(np.asarray(before).mean()) < mean_of(dim)
    assert client.get(f"/api/photos/{photo['id']}").json()["step"] == 2  # no further steps ran


def test_download_is_the_clis_file_for_the_same_settings(server, tmp_path):
    client, _ = server
    data = encoded(dark_array(40, 48, seed=2))
    photo = fitted(client, data, "scene.png")
    response = client.get(f"/api/photos/{photo['id']}/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert 'filename="scene_enhanced.png"' in response.headers["content-disposition"]
    (tmp_path / "scene.png").write_bytes(data)
    result = run("enhance", tmp_path / "scene.png", "-o", tmp_path / "out", *DEFAULT_FAST, "-q")
    assert result.exit_code == 0, result.stderr
    assert response.content == (tmp_path / "out" / "scene.png").read_bytes()
    # Another light gives another file, still a PNG of the input's size.
    other = client.get(f"/api/photos/{photo['id']}/download", params={"brightness": 0.8, "denoise": "off"})
    assert other.content != response.content and picture(other).size == (48, 40)


def test_download_keeps_the_inputs_format_and_metadata(server):
    client, _ = server
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    photo = fitted(client, encoded(dark_array(40, 48, seed=3), "JPEG", quality=95, exif=exif.tobytes()), "cam.JPG")
    response = client.get(f"/api/photos/{photo['id']}/download")
    assert response.headers["content-type"] == "image/jpeg"
    assert 'filename="cam_enhanced.JPG"' in response.headers["content-disposition"]
    downloaded = picture(response)
    assert downloaded.format == "JPEG" and downloaded.size == (48, 40)
    assert downloaded.getexif()[0x010F] == "TestCam"


def test_gray_sixteen_bit_input_downloads_as_sixteen_bit(server):
    client, _ = server
    array = dark_array(40, 48, seed=4)[:, :, 0].astype(np.uint16) * 257
    photo = fitted(client, encoded(array), "gray16.png")
    downloaded = images.decode_image(client.get(f"/api/photos/{photo['id']}/download").content, "download")
    assert downloaded.grayscale and downloaded.bits == 16


def test_maps_and_contact_sheet(server):
    client, _ = server
    photo = fitted(client, encoded(dark_array(40, 48, seed=5)))
    means = {}
    for name in ("illumination", "illumination_adjusted", "reflectance", "noise", "denoised_away"):
        response = client.get(f"/api/photos/{photo['id']}/maps/{name}.jpg", params={"brightness": 0.6})
        assert picture(response).size == (48, 40)
        means[name] = mean_of(response)
    assert means["illumination_adjusted"] > means["illumination"]  # L^gamma brightens
    assert client.get(f"/api/photos/{photo['id']}/maps/secret.jpg").status_code == 404
    sheet = picture(client.get(f"/api/photos/{photo['id']}/sheet.png"))
    assert sheet.format == "PNG" and sheet.width > 7 * 48


def test_zip_of_a_batch(server):
    client, _ = server
    first = fitted(client, encoded(dark_array(40, 48, seed=6)), "same.png")
    second = fitted(client, encoded(dark_array(40, 48, seed=7), "JPEG"), "same.png")
    response = client.get("/api/zip", params={"p": [f"{first['id']}:0.5:off", f"{second['id']}::"]})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        formats = [Image.open(io.BytesIO(archive.read(name))).format for name in names]
    # The second photo is a JPEG under a .png name: written as what it is, under a name of its own.
    assert names == ["same_enhanced.png", "same_enhanced.jpg"]
    assert formats == ["PNG", "JPEG"]
    assert not list(server[1].folder.glob("batch-*.zip")), "the zip outlived its download"


def test_oversize_upload_is_refused_and_the_server_keeps_serving(server):
    client, _ = server
    response = upload(client, b"\0" * (UPLOAD_LIMIT + 1), "huge.png")
    assert response.status_code == 413
    assert response.json()["error"] == "huge.png: file is larger than this server's upload limit of 0.2 MB; refused"
    assert client.get("/api/info").json()["upload_bytes"] == UPLOAD_LIMIT
    assert upload(client, encoded(dark_array(40, 48))).status_code == 201


def test_images_over_the_pixel_limit_are_refused_before_decoding(server):
    client, _ = server
    # A header that claims 200 megapixels (and holds no pixels): refused from the header alone.
    response = upload(client, crafted_png_header(20000, 10000), "bomb.png")
    assert response.status_code == 422
    assert (
        response.json()["error"] == "bomb.png: image has more pixels than this server's limit of 6000 pixels; refused"
    )
    response = upload(client, encoded(dark_array(100, 100)), "big.png")
    assert (
        response.json()["error"]
        == "big.png: image has 10000 pixels, more than this server's limit of 6000 pixels; refused"
    )
    assert upload(client, encoded(dark_array(40, 48))).status_code == 201


@pytest.mark.parametrize("data", [b"", encoded(dark_array(40, 48))[:-30], b"not an image at all"])
def test_bad_images_get_the_clis_message(server, data):
    client, _ = server
    response = upload(client, data, "bad.png")
    with pytest.raises(InputError) as expected:
        images.decode_image(data, "bad.png")
    assert response.status_code == 422
    assert response.json() == {"error": str(expected.value)}


def test_a_photo_too_small_to_fit_fails_with_the_clis_message(server):
    client, _ = server
    response = upload(client, encoded(dark_array(3, 3)), "tiny.png")
    photo = wait_done(client, response.json()["id"])
    assert photo["status"] == "failed"
    assert photo["error"] == "tiny.png: image is 3x3 pixels; RRDNet needs at least 5x5"
    assert client.get(f"/api/photos/{photo['id']}/preview.jpg").status_code == 409


def test_two_uploads_at_once_are_both_served(server):
    client, _ = server
    results = {}

    def send(seed: int) -> None:
        response = upload(client, encoded(dark_array(40, 48, seed=seed)), f"tab{seed}.png")
        results[seed] = wait_done(client, response.json()["id"])

    threads = [threading.Thread(target=send, args=(seed,)) for seed in (10, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(FIT_TIMEOUT)
    assert sorted(photo["name"] for photo in results.values()) == ["tab10.png", "tab11.png"]
    assert all(photo["status"] == "done" for photo in results.values())


def test_bad_requests_get_one_line_errors(server):
    client, _ = server
    photo = fitted(client, encoded(dark_array(40, 48, seed=12)))
    url = f"/api/photos/{photo['id']}/preview.jpg"
    assert client.get(url, params={"brightness": 2}).json() == {"error": "brightness 2: must be between 0 and 1"}
    assert client.get(url, params={"denoise": "much"}).json() == {
        "error": "denoise 'much': expected 'auto', 'off' or a number"
    }
    assert client.get("/api/photos/0123456789abcdef/preview.jpg").status_code == 404
    assert client.get("/api/zip", params={"p": "0123456789abcdef::"}).status_code == 404


def test_the_page_and_its_files_are_served(server):
    client, _ = server
    page = client.get("/")
    assert page.status_code == 200 and 'id="brightness"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_cross_site_uploads_and_foreign_host_names_are_refused():
    studio = Studio(config(), Limits(), threads=1)
    with TestClient(create_app(studio, ["127.0.0.1", "localhost", "::1"]), base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/info").status_code == 200
        assert client.get("/api/info", headers={"Host": "[::1]:8000"}).status_code == 200
        assert client.get("/api/info", headers={"Host": "rebound.example:8000"}).status_code == 403
        response = client.post("/api/photos", content=b"x", headers={"Origin": "http://elsewhere.example"})
        assert response.status_code == 403
    assert not studio.folder.exists()


def test_queue_limit(tmp_path):
    studio = Studio(config(), Limits(fits=1, queue=1), threads=1)
    try:
        data = encoded(dark_array(40, 48))
        studio.add("one.png", data)
        studio.add("two.png", data)
        with pytest.raises(UsageError, match=r"three.png: the queue is full \(2 photos waiting\)"):
            studio.add("three.png", data)
    finally:
        studio.close()
    assert not studio.folder.exists()


def test_helpers():
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\photos\\a\x07b.jpg") == "ab.jpg"
    assert display_name(None) == display_name("") == "photo"
    assert output_name("a.jpeg", "JPEG") == "a_enhanced.jpeg"
    assert output_name("a.gif", "PNG") == "a_enhanced.png"
    assert host_name("[::1]:8000") == "::1" and host_name("localhost:1") == "localhost" and host_name("a") == "a"
    assert Settings.parse("", "0") == Settings(None, "off")
    assert Settings.parse("0.5", "2.5") == Settings(0.5, 2.5)
    with pytest.raises(UsageError, match="not a number"):
        Settings.parse("nan?", None)


# ------------------------------------------------------------------------------------ the command


def test_missing_extra_is_one_line_and_exit_2(monkeypatch):
    import rrdnet_cli

    # None in sys.modules makes an import fail as a missing package would.
    for name in [name for name in sys.modules if name.split(".")[0] == "starlette"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.delitem(sys.modules, "rrdnet_cli.serve")
    monkeypatch.delattr(rrdnet_cli, "serve")
    result = run("serve", "--port", "0")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "rrdnet: error: rrdnet serve needs the serve extra: pip install 'rrdnet-cli[serve]' (starlette is missing)\n"
    )


def test_port_in_use_is_one_line_and_exit_2():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("serve", "--port", port, *DEFAULT_FAST)
    assert result.exit_code == 2
    assert re.fullmatch(rf"rrdnet: error: 127\.0\.0\.1:{port}: cannot listen \(.+\)\n", result.stderr)


def test_ctrl_c_stops_cleanly_and_removes_the_temporary_folder(tmp_path):
    environment = cli_environment()
    environment["TMPDIR"] = str(tmp_path)
    process = subprocess.Popen(
        cli_command("serve", "--port", "0", *DEFAULT_FAST),
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stderr.readline()
        match = re.fullmatch(r"rrdnet: serving on (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)\n", line)
        assert match, line
        import urllib.request

        with urllib.request.urlopen(match.group(1) + "api/info", timeout=30) as answer:
            assert b"upload_bytes" in answer.read()
        assert [path.name.startswith("rrdnet-serve-") for path in tmp_path.iterdir()] == [True]
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    assert rest == "rrdnet: stopped; temporary files removed\n"
    assert list(tmp_path.iterdir()) == []
