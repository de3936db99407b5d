import pytest

from rrdnet_cli import Config, ConfigError, load_config
from rrdnet_cli.config import AUTO_BRIGHTNESS, preset_names


def test_paper_preset_holds_the_published_settings():
    config = load_config("paper")
    assert (config.iterations, config.learning_rate, config.gamma) == (1000, 1e-3, 0.4)
    assert (config.illumination_weight, config.reflectance_weight, config.noise_weight) == (1.0, 1.0, 5000.0)
    assert config.reflectance_fidelity_weight == 1.0
    assert (config.blur_size, config.blur_sigma) == (5, 3.0)


def test_every_preset_loads():
    assert "paper" in preset_names()
    for name in preset_names():
        assert isinstance(load_config(name), Config)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        load_config("paper").gamma = 1.0


def test_overrides_win_and_none_keeps_file_value():
    config = load_config("paper", iterations=7, gamma=None, seed=3)
    assert (config.iterations, config.gamma, config.seed) == (7, 0.4, 3)


@pytest.mark.parametrize(
    "text, key",
    [
        ("iterationz: 5\n", "iterationz"),
        ("iterations: five\n", "iterations"),
        ("iterations: -1\n", "iterations"),
        ("gamma: 0\n", "gamma"),
        ("gamma: -0.4\n", "gamma"),
        ("learning_rate: true\n", "learning_rate"),
        ("noise_weight: .nan\n", "noise_weight"),
        ("device: 3\n", "device"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_bad_override_is_named():
    with pytest.raises(ConfigError, match="iterations"):
        load_config("paper", iterations=-5)


def test_invalid_yaml_and_non_mapping(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("gamma: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="no such preset"):
        load_config("no-such-preset")


def test_yaml_round_trip(tmp_path):
    config = load_config("paper", gamma=0.55, iterations=12)
    path = tmp_path / "saved.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


def test_partial_file_keeps_defaults(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("gamma: 0.6\n")
    config = load_config(path)
    assert config.gamma == 0.6 and config.iterations == Config().iterations


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
