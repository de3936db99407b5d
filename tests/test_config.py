import os

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


def test_a_config_path_that_is_no_file_says_what_it_is(tmp_path):
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    with pytest.raises(ConfigError, match="loop.yaml: cannot read config \\(Too many levels of symbolic links\\)"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        load_config(tmp_path / "folder.yaml")
    os.mkfifo(tmp_path / "pipe.yaml")  # no writer: reading it would block
    with pytest.raises(ConfigError, match="pipe.yaml: not a regular file"):
        load_config(tmp_path / "pipe.yaml")


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


# ----------------------------------------------------------------------------- untrusted configs


@pytest.mark.parametrize("stray", ["file", "folder"])
def test_a_stray_file_or_folder_named_like_a_preset_does_not_hijack_it(tmp_path, monkeypatch, stray):
    monkeypatch.chdir(tmp_path)
    if stray == "file":
        (tmp_path / "default").write_text("gamma: 5\n")
    else:
        (tmp_path / "default").mkdir()
    assert load_config("default") == load_config(None)
    assert load_config("default").gamma != 5


def test_a_file_is_read_when_the_argument_looks_like_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text("gamma: 0.7\n")
    assert load_config("./mine").gamma == 0.7
    with pytest.raises(ConfigError, match="no such preset .*write ./mine"):
        load_config("mine")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("gamma: bright\n", "'auto'"),
        ("brightness: 1.5\n", "at most 1.0"),
        ("brightness: -0.1\n", "at least 0"),
        ("brightness: dim\n", "brightness"),
        ("tone_mapping: flat\n", "local, global"),
    ],
)
def test_bad_light_values_in_files(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("blur_size: 4\n", "blur_size': must be odd, got 4"),
        ("seed: 18446744073709551616\n", "seed': must be at most 18446744073709551615"),
        ("seed: -1\n", "seed': must be at least 0"),
        ("blur_sigma: 1.0e+300\n", "blur_sigma': expected a finite number within float32's range"),
        ("learning_rate: 1.0e+39\n", "learning_rate': expected a finite number within float32's range"),
        ("? [gamma, seed]\n: 1\n", "invalid YAML: a key must be a name, not a list or mapping \\(line 1\\)"),
        ("? {gamma: 1}\n: 1\n", "invalid YAML: a key must be a name, not a list or mapping"),
        # YAML 1.1 would read 80 (base 60): refused as the text it is.
        ("iterations: 1:20\n", "'iterations': expected an integer, got '1:20'"),
    ],
)
def test_values_that_would_crash_or_mislead_are_rejected(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_config_file_with_gamma_auto_round_trips(tmp_path):
    path = tmp_path / "auto.yaml"
    path.write_text(load_config("paper", brightness=0.35).to_yaml())
    assert "gamma: auto" in path.read_text()
    assert load_config(path) == load_config("paper", brightness=0.35)


def test_the_largest_seed_is_accepted_by_torch():
    import torch

    config = load_config("paper", seed=2**64 - 1)
    torch.Generator().manual_seed(config.seed)  # must not raise


def test_alias_bomb_is_refused_quickly_and_briefly(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for depth in range(1, 10):
        previous = f"*a{depth - 1}"
        lines.append(f"a{depth}: &a{depth} [{', '.join([previous] * 9)}]")
    lines.append("gamma: *a9")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="anchors are not allowed") as caught:
        load_config(path)
    assert len(str(caught.value)) < 300


def test_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("gamma: 0.5\nseed: 1\ngamma: 0.7\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: key 'gamma' is given twice \(line 3\)"):
        load_config(path)


@pytest.mark.parametrize(
    "text, value",
    [("iterations: 017", 17), ("iterations: 0o17", 15), ("iterations: 0x1F", 31), ("learning_rate: .5e-2", 0.005)],
)
def test_numbers_read_as_yaml_1_2_and_python_read_them(tmp_path, text, value):
    path = tmp_path / "numbers.yaml"
    path.write_text(text + "\n")
    key = text.split(":")[0]
    assert getattr(load_config(path), key) == value


def test_numbers_in_exponent_form_need_no_dot(tmp_path):
    path = tmp_path / "exponents.yaml"
    path.write_text("learning_rate: 5e-3\niterations: 2E2\ngamma: '1e-1'\n")
    with pytest.raises(ConfigError, match="'gamma': expected a number or 'auto', got '1e-1'"):
        load_config(path)  # quoted, it stays a string
    path.write_text("learning_rate: 5e-3\niterations: 2E2\n")
    config = load_config(path)
    assert config.learning_rate == 0.005 and config.iterations == 200 and isinstance(config.iterations, int)


def test_long_values_are_cut_in_messages(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("gamma: [" + ", ".join(["1"] * 5000) + "]\n")
    with pytest.raises(ConfigError, match="gamma") as caught:
        load_config(path)
    assert len(str(caught.value)) < 300 + len(str(path))


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("folder", "is a folder"),
        ("binary", "binary data"),
        ("latin1", "not UTF-8"),
        ("huge", "larger than 1024 KiB"),
        ("scalar", "expected a mapping of keys to values, got int"),
    ],
)
def test_config_files_that_are_not_configs(tmp_path, kind, needle):
    path = tmp_path / "c.yaml"
    if kind == "folder":
        path.mkdir()
    else:
        contents = {
            "binary": b"\x89PNG\r\n\x1a\n\x00\x00",
            "latin1": "gamma: 0.5 # caf\xe9\n".encode("latin-1"),
            "huge": b"# " + b"x" * (1 << 20) + b"\n",
            "scalar": b"42\n",
        }[kind]
        path.write_bytes(contents)
    with pytest.raises(ConfigError, match=needle) as caught:
        load_config(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_unreadable_config_file(tmp_path, monkeypatch):
    # Faked: CI runs as root, who reads every file whatever its mode.
    import builtins

    path = tmp_path / "c.yaml"
    path.write_text("gamma: 0.5\n")
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(ConfigError, match="cannot read config \\(Permission denied\\)"):
        load_config(path)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("iterations: 99999999999999999999\n", "'iterations': must be at most 100000"),
        ("convergence_window: 100001\n", "'convergence_window': must be at most 100000"),
        ("optimisation_side: 65537\n", "'optimisation_side': must be at most 65536"),
        ("tile_size: 65537\n", "'tile_size': must be at most 65536"),
        ("learning_rate: 3.0e+38\n", "'learning_rate': must be at most 1.0"),
        ("denoise: 1.0e+18\n", "'denoise': must be at most 100.0"),
        ("strategy: crops\ncrop_size: 100000\n", "'crop_size': must be at most 4096"),
        ("strategy: crops\ncrops_per_step: 1000000\n", "'crops_per_step': must be at most 256"),
        ("strategy: crops\ncrop_size: 1024\ncrops_per_step: 32\n", "'crops_per_step': 32 crops of 1024x1024 pixels"),
        ("iterations: " + "9" * 5000 + "\n", "'iterations': out of range, got an integer of 5000 digits"),
        ("seed: -" + "9" * 5000 + "\n", "'seed': out of range, got an integer of 5000 digits"),
    ],
)
def test_every_size_count_and_step_key_has_an_upper_bound(tmp_path, text, needle):
    path = tmp_path / "greedy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and len(str(caught.value)) < 300


def test_the_bounds_still_take_real_settings():
    config = load_config(
        "paper",
        iterations=100_000,
        strategy="crops",
        crop_size=4096,
        crops_per_step=1,
        tile_size=65536,
        learning_rate=1.0,
        denoise=100.0,
    )
    assert config.iterations == 100_000 and config.crop_size == 4096 and config.learning_rate == 1.0
    assert load_config("paper", strategy="crops", crop_size=256, crops_per_step=256).crops_per_step == 256
    with pytest.raises(ConfigError, match="'iterations': must be at most 100000, got 1000000000000"):
        load_config("paper", iterations=10**12)
    with pytest.raises(ConfigError, match="got an integer of about 5000 digits"):
        load_config("paper", seed=10**4999)
