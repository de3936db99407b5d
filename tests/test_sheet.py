import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rrdnet_cli import enhance
from rrdnet_cli.cli import main
from rrdnet_cli.sheet import PANEL_SIZE, contact_sheet, noise_for_viewing, sheet_title

from helpers import PAPER_FAST, dark_tensor, write_dark


def test_sheet_shows_seven_panels_and_the_loss_plot(tiny_config):
    enhancement = enhance(dark_tensor(40, 60), tiny_config)
    sheet = contact_sheet(enhancement, sheet_title("x.png", enhancement))
    assert sheet.mode == "RGB"
    # Seven panels of the panel width side by side (plus margins), over the plot.
    assert 7 * PANEL_SIZE < sheet.width < 7 * PANEL_SIZE + 120
    assert sheet.height > PANEL_SIZE * 40 / 60 + 200
    pixels = np.asarray(sheet)
    # The result panel is the enhanced image itself: its mean shows up in the second panel.
    second = pixels[40 : 40 + 100, 12 + PANEL_SIZE + 12 + 20 : 12 + 2 * PANEL_SIZE - 20]
    expected = enhancement.result.mean().item() * 255
    assert abs(second.mean() - expected) < 12


def test_noise_view_is_grey_at_zero():
    noise = torch.tensor([-0.02, 0.0, 0.01]).reshape(1, 3, 1, 1)
    view, extent = noise_for_viewing(noise)
    assert extent == pytest.approx(0.02)
    assert view.flatten().tolist() == pytest.approx([0.0, 0.5, 0.75])


def test_title_names_steps_and_light(tiny_config):
    enhancement = enhance(dark_tensor(), tiny_config.replace(brightness=0.15))
    title = sheet_title("a.png", enhancement)
    assert "a.png" in title and "3 steps" in title and "target brightness 0.15" in title


def test_cli_contact_sheet_and_collisions(tmp_path):
    source = write_dark(tmp_path / "in" / "sub" / "a.png")
    args = PAPER_FAST
    result = CliRunner().invoke(
        main, ["enhance", str(tmp_path / "in"), "-r", "-o", str(tmp_path / "out"), "--contact-sheet", *args]
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "sheets" / "sub" / "a_sheet.png") as sheet:
        assert sheet.width > 6 * PANEL_SIZE
    assert (tmp_path / "out" / "sub" / "a.png").exists()
    # An output folder inside the input folder must not overwrite inputs with side outputs.
    result = CliRunner().invoke(
        main, ["enhance", str(source), "-o", str(tmp_path / "in" / "sub"), "--contact-sheet", *args]
    )
    assert result.exit_code == 2


def test_a_term_zero_throughout_is_left_off_the_plot():
    from rrdnet_cli.sheet import CURVE_COLOURS, _loss_plot, label_font

    steps = np.arange(1, 12, dtype=np.float64)[:, None]
    losses = np.hstack([100 / steps, 50 / steps, 80 / steps, np.zeros_like(steps), 230 / steps])
    width, height = 800, 240
    plot = np.asarray(_loss_plot(losses, width, height, label_font(13)))
    noise_colour = np.all(plot == CURVE_COLOURS[3], axis=-1)
    # Only its legend swatch is drawn, right of the plot area.
    assert noise_colour.any() and np.nonzero(noise_colour)[1].min() > width - 250
    # The other curves keep the scale: the total falls by a decade over a third of the height or
    # more, where a range reaching down to 1e-12 would squeeze it into a few pixels.
    rows = np.nonzero(np.all(plot[:, : width - 250] == CURVE_COLOURS[4], axis=-1))[0]
    assert rows.max() - rows.min() > height / 3
