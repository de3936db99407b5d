import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rrdnet_cli import ConfigError, enhance, load_config
from rrdnet_cli.cli import main
from rrdnet_cli.config import AUTO_BRIGHTNESS
from rrdnet_cli.light import GAMMA_MAX, GAMMA_MIN, brightness_at, choose_light, gamma_for_brightness, mean_brightness

from conftest import dark_tensor, write_dark

FAST = ["--config", "paper", "--iterations", "2", "--device", "cpu"]


def synthetic_maps(seed=0):
    """A dim image and a plausible decomposition of it: L in (0.05, 0.6), small noise."""
    generator = torch.Generator().manual_seed(seed)
    illumination = 0.05 + 0.55 * torch.rand(1, 1, 24, 32, generator=generator)
    reflectance = torch.rand(1, 3, 24, 32, generator=generator)
    noise = 0.01 * torch.randn(1, 3, 24, 32, generator=generator)
    image = (illumination * reflectance + noise).clamp(0, 1)
    return image, illumination, noise


@pytest.mark.parametrize("target", [0.2, 0.3, 0.38])
def test_bisection_hits_a_reachable_target(target):
    image, illumination, noise = synthetic_maps()
    choice = gamma_for_brightness(image, illumination, noise, target)
    assert choice.reached and abs(choice.brightness - target) < 1e-3
    assert GAMMA_MIN < choice.gamma < GAMMA_MAX
    assert choice.brightness == pytest.approx(brightness_at(image, illumination, noise, choice.gamma))


def test_brightness_never_increases_with_gamma():
    image, illumination, noise = synthetic_maps(1)
    gammas = np.geomspace(GAMMA_MIN, GAMMA_MAX, 30)
    values = [brightness_at(image, illumination, noise, gamma) for gamma in gammas]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(values, values[1:]))


def test_unreachable_targets_give_the_nearest_end_and_say_so():
    image, illumination, noise = synthetic_maps()
    too_bright = gamma_for_brightness(image, illumination, noise, 0.99)
    assert not too_bright.reached and too_bright.gamma == GAMMA_MIN
    assert too_bright.brightness == pytest.approx(brightness_at(image, illumination, noise, GAMMA_MIN))
    assert "target 0.990 out of reach" in too_bright.describe()
    too_dark = gamma_for_brightness(image, illumination, noise, 0.0)
    assert not too_dark.reached and too_dark.gamma == GAMMA_MAX


def test_another_gamma_range_bounds_the_search():
    image, illumination, noise = synthetic_maps()
    floor = gamma_for_brightness(image, illumination, noise, 0.99, gamma_range=(0.3, 1.0))
    assert floor.gamma == 0.3 and not floor.reached
    reachable = brightness_at(image, illumination, noise, 0.5)
    inside = gamma_for_brightness(image, illumination, noise, reachable, gamma_range=(0.3, 0.8))
    assert inside.reached and inside.gamma == pytest.approx(0.5, rel=1e-3)


def test_a_chosen_gamma_never_darkens_below_the_photo_own_exposure():
    image, illumination, noise = synthetic_maps()
    own_exposure = mean_brightness((image - noise).clamp(0, 1))
    choice = gamma_for_brightness(image, illumination, noise, own_exposure / 2)
    assert choice.gamma == GAMMA_MAX == 1.0 and not choice.reached
    assert choice.brightness == pytest.approx(own_exposure, abs=1e-6)


def test_fixed_gamma_is_kept_and_auto_needs_a_target():
    image, illumination, noise = synthetic_maps()
    fixed = choose_light(image, illumination, noise, 0.4, 0.45)
    assert fixed.gamma == 0.4 and fixed.target is None
    assert choose_light(image, illumination, noise, "auto", 0.3).brightness == pytest.approx(0.3, abs=1e-3)


def test_config_gamma_auto_and_brightness():
    assert load_config("paper").brightness == AUTO_BRIGHTNESS
    assert load_config("paper", gamma="auto").gamma == "auto"
    config = load_config("paper", brightness=0.3)
    assert (config.gamma, config.brightness) == ("auto", 0.3)
    with pytest.raises(ConfigError, match="conflict"):
        load_config("paper", gamma=0.5, brightness=0.3)
    assert load_config("paper", gamma="auto", brightness=0.3).gamma == "auto"


@pytest.mark.parametrize(
    "text, needle",
    [("gamma: bright\n", "'auto'"), ("brightness: 1.5\n", "at most 1.0"), ("brightness: -0.1\n", "at least 0"), ("brightness: auto\n", "brightness")],
)
def test_bad_light_values_in_files(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_config_file_with_gamma_auto_round_trips(tmp_path):
    path = tmp_path / "auto.yaml"
    path.write_text(load_config("paper", brightness=0.35).to_yaml())
    assert "gamma: auto" in path.read_text()
    assert load_config(path) == load_config("paper", brightness=0.35)


def test_enhance_with_gamma_auto_reports_the_chosen_gamma(tiny_config):
    image = dark_tensor()
    enhancement = enhance(image, tiny_config.replace(brightness=0.18))
    assert enhancement.target_brightness == 0.18
    assert abs(mean_brightness(enhancement.result) - 0.18) < 0.01
    assert enhancement.brightness == pytest.approx(mean_brightness(enhancement.result))
    # The fit is the same as with a fixed gamma: only the recombination differs.
    fixed = enhance(image, tiny_config.replace(gamma=enhancement.gamma))
    assert torch.equal(fixed.result, enhancement.result) and fixed.target_brightness is None


def test_cli_brightness_hits_its_target_in_the_written_file(tmp_path):
    source = write_dark(tmp_path / "dark.png", 40, 48)
    result = CliRunner().invoke(main, ["enhance", str(source), "-o", str(tmp_path / "out"), "--brightness", "0.18", "-v", *FAST])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "dark.png") as written:
        mean = np.asarray(written, dtype=np.float64).mean() / 255.0
    assert abs(mean - 0.18) < 0.01
    line = next(line for line in result.stderr.splitlines() if "dark.png ->" in line)
    assert "gamma " in line and "brightness 0.18" in line
    assert "gamma: auto" in result.stderr and "brightness: 0.18" in result.stderr


def test_cli_gamma_auto_and_bad_gamma(tmp_path):
    source = write_dark(tmp_path / "dark.png")
    runner = CliRunner()
    result = runner.invoke(main, ["enhance", str(source), "-o", str(tmp_path / "out"), "--gamma", "auto", "-v", *FAST])
    assert result.exit_code == 0 and "gamma: auto" in result.stderr
    result = runner.invoke(main, ["enhance", str(source), "-o", str(tmp_path / "o2"), "--gamma", "bright", *FAST])
    assert result.exit_code == 2 and "not a number or 'auto'" in result.stderr
    result = runner.invoke(main, ["enhance", str(source), "-o", str(tmp_path / "o3"), "--gamma", "0.5", "--brightness", "0.3", *FAST])
    assert result.exit_code == 2 and "conflict" in result.stderr
    assert not (tmp_path / "o3").exists()
    result = runner.invoke(main, ["enhance", str(source), "-o", str(tmp_path / "o4"), "--brightness", "2", *FAST])
    assert result.exit_code == 2 and "brightness" in result.stderr
