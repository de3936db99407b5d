"""rrdnet serve's page in a real browser: headless Chromium, driven by Playwright, against the
real command (uvicorn on 127.0.0.1, a free port).

Skipped, saying why, where Chromium (Debian's ``chromium``) or Playwright is missing; `.ci/run`
installs both. The screenshot is kept in the test's folder; with RRDNET_SCREENSHOT=PATH it is also
written to PATH (docs/serve.png, shown in the README, is made so).
"""

import os
import re
import shutil
import signal
import subprocess
import zipfile

import numpy as np
import pytest
from PIL import Image

from helpers import DEFAULT_FAST, REPO_ROOT, cli_command, cli_environment, crafted_png_header, write_dark

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install chromium): the page is not tested in a browser"
)
pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'rrdnet-cli[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the test extra)")

PHOTO = REPO_ROOT / "examples" / "coffee_dark.png"
TIMEOUT_MS = 120_000
# The mean of the picture the page shows, read back from the browser's own pixels.
MEAN_OF_AFTER = """() => {
  const image = document.getElementById("after");
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let index = 0; index < data.length; index += 4) sum += data[index] + data[index + 1] + data[index + 2];
  return sum / (data.length / 4 * 3);
}"""


@pytest.fixture
def server(tmp_path):
    """``rrdnet serve --port 0`` with its temporary folder in the test's own; stopped by Ctrl-C."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = cli_environment()
    environment["TMPDIR"] = str(temporary)
    process = subprocess.Popen(
        cli_command("serve", "--port", "0", *DEFAULT_FAST), env=environment, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stderr.readline()
        match = re.fullmatch(r"rrdnet: serving on (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)\n", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        yield match.group(1)
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[1]
        assert process.returncode == 0, rest
        assert list(temporary.iterdir()) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_upload_compare_relight_and_download_in_a_browser(server, tmp_path):
    small = write_dark(tmp_path / "small.png", 40, 48)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server)
            page.wait_for_function("() => document.getElementById('limits').textContent.length > 0")

            # An image over the pixel limit: the server's one-line refusal is shown, and the page goes on.
            page.set_input_files(
                "#files", [{"name": "bomb.png", "mimeType": "image/png", "buffer": crafted_png_header(20000, 10000)}]
            )
            page.wait_for_selector(".card.failed")
            assert page.inner_text("#message") == (
                "bomb.png: image has more pixels than this server's limit of 50 megapixels; refused"
            )

            page.set_input_files("#files", [str(PHOTO), str(small)])
            page.wait_for_function("() => document.querySelectorAll('.card[data-status=done]').length === 2")
            page.wait_for_function("() => +document.getElementById('after').dataset.version >= 1")
            assert not page.is_hidden("#viewer")
            assert page.inner_text(".card.selected .name") == PHOTO.name
            first = page.evaluate(MEAN_OF_AFTER)
            version = int(page.get_attribute("#after", "data-version"))

            # The brightness slider relights: first the drag-sized copy, then the preview once let go.
            page.fill("#brightness", "0.6")
            page.wait_for_function(
                f"() => {{ const after = document.getElementById('after');"
                f" return +after.dataset.version > {version} && after.dataset.size === 'preview'; }}"
            )
            assert page.evaluate(MEAN_OF_AFTER) > first + 30  # from the default 0.4: 0.2 of 255 brighter
            assert re.fullmatch(r"relit in \d+ ms", page.inner_text("#timing"))
            page.fill("#split", "30")
            assert "inset(0px 70% 0px 0px)" in page.get_attribute("#before", "style").replace("0 ", "0px ")

            # Maps and the contact sheet, one click away.
            page.click("#show-maps")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#maps img')]"
                ".filter((image) => image.naturalWidth > 0).length === 5"
            )
            page.click("#show-sheet")
            page.wait_for_function("() => document.getElementById('sheet-image').naturalWidth > 0")

            with page.expect_download() as started:
                page.click("#download")
            download = started.value
            assert download.suggested_filename == "coffee_dark_enhanced.png"
            with Image.open(download.path()) as result:
                assert result.format == "PNG" and result.size == (600, 400)
                assert np.asarray(result.convert("RGB")).mean() / 255 == pytest.approx(0.6, abs=0.05)

            with page.expect_download() as started:
                page.click("#zip")
            with zipfile.ZipFile(started.value.path()) as archive:
                assert sorted(archive.namelist()) == ["coffee_dark_enhanced.png", "small_enhanced.png"]

            # Reset: the configuration's light again.
            version = int(page.get_attribute("#after", "data-version"))
            page.click("#brightness-auto")
            page.wait_for_function(f"() => +document.getElementById('after').dataset.version > {version}")
            assert page.evaluate(MEAN_OF_AFTER) == pytest.approx(first, abs=1)

            # Both panels closed again, for a screenshot of the main view.
            page.click("#show-maps")
            page.click("#show-sheet")
            assert page.is_hidden("#maps") and page.is_hidden("#sheet")
            screenshot = tmp_path / "serve.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert Image.open(screenshot).size[0] == 1000
            if os.environ.get("RRDNET_SCREENSHOT"):  # 256 colours: a third of the bytes, for the docs
                with Image.open(screenshot) as shot:
                    shot.convert("RGB").quantize(256).save(os.environ["RRDNET_SCREENSHOT"], optimize=True)
        finally:
            browser.close()
