import json
import math

import numpy as np
import pytest
from PIL import Image

from rrdnet_cli import UsageError
from rrdnet_cli.evaluate import gt_mean_aligned, match_files, psnr, score_images, ssim

from helpers import run


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


@pytest.fixture
def known_pair(tmp_path):
    """Reference: all 100. Result: the top half 110, the bottom half 90 (every channel)."""
    reference = np.full((32, 40, 3), 100)
    result = reference.copy()
    result[:16] = 110
    result[16:] = 90
    save(tmp_path / "gt" / "sub" / "a.png", reference)
    save(tmp_path / "enhanced" / "sub" / "a.png", result)
    return tmp_path


def test_psnr_of_a_known_pair_by_hand(known_pair):
    # Every pixel is 10 levels off: MSE = (10/255)^2, PSNR = 20 log10(255/10).
    expected = 20 * math.log10(255 / 10)
    json_path = known_pair / "scores.json"
    result = run("eval", known_pair / "enhanced", "--reference", known_pair / "gt", "--json", json_path)
    assert result.exit_code == 0, result.output
    scores = json.loads(json_path.read_text())
    row = scores["files"][0]
    assert row["name"] == "sub/a.png" and row["psnr"] == pytest.approx(expected, abs=1e-9)
    # The means are equal already (100), so GT-mean alignment changes nothing here.
    assert row["psnr_gtmean"] == pytest.approx(expected, abs=1e-9)
    assert row["brightness"] == pytest.approx(100 / 255) and row["niqe"] is None
    assert scores["mean"]["psnr"] == pytest.approx(expected) and scores["count"] == 1
    lines = result.stdout.splitlines()
    assert "PSNR" in lines[0] and "sub/a.png" in lines[1] and f"{expected:.2f}" in lines[1]
    assert lines[-1].startswith("mean (1 files)")
    assert "NIQE needs at least 192x192" in result.stderr


def test_gt_mean_alignment_by_hand():
    reference = np.full((16, 16, 3), 0.5)
    result = np.full((16, 16, 3), 0.25)
    result[:8] = 0.35  # mean 0.3: aligned = result * 0.5 / 0.3
    aligned = gt_mean_aligned(result, reference)
    assert aligned.mean() == pytest.approx(0.5)
    expected_mse = ((0.35 * 5 / 3 - 0.5) ** 2 + (0.25 * 5 / 3 - 0.5) ** 2) / 2
    assert psnr(aligned, reference) == pytest.approx(10 * math.log10(1 / expected_mse))
    scores = score_images("x", result, reference)
    assert scores.psnr == pytest.approx(psnr(result, reference))
    assert scores.psnr_gtmean > scores.psnr and scores.ssim_gtmean == pytest.approx(ssim(aligned, reference))


def test_ssim_of_identical_images_is_one_and_psnr_infinite(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (24, 24, 3))
    save(tmp_path / "e" / "x.png", image)
    save(tmp_path / "r" / "x.png", image)
    result = run("eval", tmp_path / "e", "--reference", tmp_path / "r", "--json", "-")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["files"][0]
    assert row["psnr"] is None and row["ssim"] == pytest.approx(1.0)  # infinite PSNR: null in JSON


def test_matching_by_relative_path_and_stem(tmp_path):
    save(tmp_path / "e" / "a.jpg", np.zeros((8, 8, 3)))
    save(tmp_path / "e" / "d" / "b.png", np.zeros((8, 8, 3)))
    save(tmp_path / "e" / "maps" / "a_noise.png", np.zeros((8, 8, 3)))  # rrdnet's own side output
    save(tmp_path / "r" / "a.png", np.zeros((8, 8, 3)))
    save(tmp_path / "r" / "d" / "b.bmp", np.zeros((8, 8, 3)))
    save(tmp_path / "r" / "unused.png", np.zeros((8, 8, 3)))
    pairs = match_files(tmp_path / "e", tmp_path / "r")
    assert [(str(rel), ref.name) for rel, _, ref in pairs] == [("a.jpg", "a.png"), ("d/b.png", "b.bmp")]
    save(tmp_path / "e" / "c.png", np.zeros((8, 8, 3)))
    with pytest.raises(UsageError, match="no reference"):
        match_files(tmp_path / "e", tmp_path / "r")
    result = run("eval", tmp_path / "e", "--reference", tmp_path / "r")
    assert result.exit_code == 2 and "c.png" in result.stderr


def test_without_reference_niqe_and_brightness_only(tmp_path):
    photo = np.asarray(Image.open("tests/data/niqe/coffee.png").convert("RGB"))
    save(tmp_path / "e" / "photo.png", photo)
    result = run("eval", tmp_path / "e")
    assert result.exit_code == 0, result.output
    header, row, mean = result.stdout.splitlines()
    assert "PSNR" not in header and "NIQE" in header
    assert float(row.split()[1]) > 0 and mean.startswith("mean (1 files)")


def test_size_mismatch_and_unreadable_files_fail_alone(tmp_path):
    save(tmp_path / "e" / "a.png", np.zeros((8, 8, 3)))
    save(tmp_path / "r" / "a.png", np.zeros((9, 8, 3)))
    save(tmp_path / "e" / "b.png", np.full((16, 16, 3), 7))
    save(tmp_path / "r" / "b.png", np.full((16, 16, 3), 9))
    (tmp_path / "e" / "c.png").write_bytes(b"broken")
    save(tmp_path / "r" / "c.png", np.zeros((8, 8, 3)))
    result = run("eval", tmp_path / "e", "--reference", tmp_path / "r")
    assert result.exit_code == 1
    assert f"rrdnet: error: {tmp_path / 'e' / 'a.png'}: result is 8x8, reference 8x9" in result.stderr.splitlines()
    assert "c.png" in result.stderr
    assert "b.png" in result.stdout and "mean (1 files)" in result.stdout


def test_a_name_with_a_newline_is_one_row_of_the_table(tmp_path):
    save(tmp_path / "e" / "odd\nname.png", np.zeros((8, 8, 3)))
    result = run("eval", tmp_path / "e")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith("odd\\nname.png ")


def test_missing_folder_is_a_usage_error(tmp_path):
    result = run("eval", tmp_path / "nope")
    assert result.exit_code == 2 and "nope" in result.stderr


@pytest.mark.parametrize("target", ["r/a.png", "e/a.png", "r/unused.png"])
def test_json_report_never_replaces_an_image(tmp_path, target):
    save(tmp_path / "e" / "a.png", np.zeros((8, 8, 3)))
    save(tmp_path / "r" / "a.png", np.full((8, 8, 3), 9))
    save(tmp_path / "r" / "unused.png", np.full((8, 8, 3), 5))
    before = {path: path.read_bytes() for path in tmp_path.rglob("*.png")}
    result = run("eval", tmp_path / "e", "--reference", tmp_path / "r", "--json", tmp_path / target)
    assert result.exit_code == 2 and "would overwrite an image" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert {path: path.read_bytes() for path in tmp_path.rglob("*.png")} == before


def test_a_json_report_named_like_an_image_is_refused_as_such(tmp_path):
    save(tmp_path / "e" / "a.png", np.zeros((8, 8, 3)))
    result = run("eval", tmp_path / "e", "--json", tmp_path / "e" / "new.png")
    assert result.exit_code == 2 and "would be an image file name inside a folder being evaluated" in result.stderr
    assert not (tmp_path / "e" / "new.png").exists()


def test_json_report_is_written_whole_beside_the_images(tmp_path):
    save(tmp_path / "e" / "a.png", np.zeros((8, 8, 3)))
    result = run("eval", tmp_path / "e", "--json", tmp_path / "e" / "scores.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "scores.json").read_text())["count"] == 1
    assert [path.name for path in (tmp_path / "e").iterdir() if path.name.endswith(".part")] == []
