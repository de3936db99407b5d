"""Meta-learn RRDNet's starting weights for the ``default`` preset (Reptile, Nichol et al. 2018).

Each image is still fitted alone, with RRDNet's own loss and no ground truth; this script only
chooses where those fits start. A meta-iteration darkens a random crop of a training photo the way
a camera under-exposes (sRGB -> linear, exposure x k, Poisson shot noise and read noise, back to
8-bit sRGB), downscales it to the fitting size, runs a few Adam steps of the RRDNet loss from the
current starting weights and moves the starting weights part of the way towards the result.
Starting there, a new photo needs far fewer steps to reach the decomposition a long fit from a
random start reaches (benchmarks/README.md, "Fidelity to `paper`").

Training photos: the freely licensed colour photos bundled with scikit-image (none of them is a
benchmark photo, and the example's `coffee` is left out so the example stays unseen); sources and
licences are in ``rrdnet_cli/data/initial_weights.md``. Seeded: the same command gives the same
weights on the same machine (bf16 arithmetic is used where the CPU runs it natively).

    python training/train_initial_weights.py [--iterations 400 --inner-steps 8 ...]
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rrdnet_cli import load_config, losses, weights
from rrdnet_cli.model import RRDNet
from rrdnet_cli.optimiser import Adam
from rrdnet_cli.pipeline import FrozenFeatures, loss_terms, run_network, use_bf16

# scikit-image's bundled photos, with the licence each one's documentation states.
PHOTOS = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 (Mikael Haggstrom, Wikimedia Commons)",
    "brick": "CC0 (cc0textures.com), grayscale",
    "grass": "CC0 (DeviantArt, linolafett), grayscale",
    "gravel": "CC0 (cc0textures.com), grayscale",
}


def load_photos() -> list[np.ndarray]:
    """The training photos as float64 RGB ``(H, W, 3)`` in [0, 1]."""
    from skimage import data

    photos = []
    for name in PHOTOS:
        picture = getattr(data, name)().astype(np.float64) / 255.0
        if picture.ndim == 2:
            picture = np.repeat(picture[..., None], 3, axis=2)
        photos.append(picture)
    return photos


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0), 1 / 2.4) - 0.055)


def dark_task(
    rng: np.random.Generator, photos: list[np.ndarray], side: int, exposures: tuple[float, float]
) -> tuple[torch.Tensor, float]:
    """A random under-exposed crop, downscaled to ``side``, and the noise-weight scale for it.

    The exposure factor is drawn log-uniformly from ``exposures``. The scale is what
    ``pipeline.optimise`` uses for a photo of the sampled full size (384 to 4000 px on its longer
    side) fitted on a ``side``-px copy.
    """
    picture = photos[rng.integers(len(photos))]
    height, width = picture.shape[:2]
    scale = rng.uniform(0.35, 1.0)
    aspect = rng.choice([1.0, 4 / 3, 3 / 2, 3 / 4, 2 / 3])
    crop_height = int(min(height, height * scale * min(1.0, 1 / aspect)))
    crop_width = int(min(width, crop_height * aspect))
    top = rng.integers(0, height - crop_height + 1)
    left = rng.integers(0, width - crop_width + 1)
    crop = picture[top : top + crop_height, left : left + crop_width]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    exposure = math.exp(rng.uniform(math.log(exposures[0]), math.log(exposures[1])))
    full_well = math.exp(rng.uniform(math.log(1000), math.log(20000)))
    linear = srgb_to_linear(crop) * exposure
    electrons = rng.poisson(linear * full_well) + rng.normal(0.0, 2.0, linear.shape)
    dark = np.round(linear_to_srgb(np.clip(electrons / full_well, 0.0, 1.0)) * 255.0) / 255.0
    image = torch.from_numpy(np.ascontiguousarray(dark)).permute(2, 0, 1).unsqueeze(0).float()
    user_side = math.exp(rng.uniform(math.log(384), math.log(4000)))
    user_pixels = user_side**2 * min(crop_height, crop_width) / max(crop_height, crop_width)
    factor = side / max(crop_height, crop_width)
    size = (max(5, round(crop_height * factor)), max(5, round(crop_width * factor)))
    small = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return small.contiguous(memory_format=torch.channels_last), math.sqrt(size[0] * size[1] / user_pixels)


def train(args: argparse.Namespace) -> RRDNet:
    torch.manual_seed(0)  # the first stage's random start
    rng = np.random.default_rng(args.seed)
    photos = load_photos()
    # --noise-map fitted trains with every term, the noise branch's included (as the first two
    # stages did); zero fits as the default preset does now, with N held at zero.
    config = load_config("default", device="cpu", noise_map=args.noise_map, precision=args.precision)
    bf16 = use_bf16(config, torch.device("cpu"))
    start = RRDNet().to(memory_format=torch.channels_last)
    if args.start:
        start.load_state_dict(weights.read(args.start))
    # With --average-from, what is written is the mean of the starts from that meta-iteration on: a
    # single Reptile step leans towards the last photo drawn, and the mean evens that out.
    average = copy.deepcopy(start)
    average_from = args.iterations if args.average_from is None else args.average_from
    written = start  # until the averaging begins
    began = time.time()
    for iteration in range(args.iterations):
        image, noise_scale = dark_task(rng, photos, args.side, (args.darkest, args.brightest))
        net = copy.deepcopy(start)
        priors = losses.image_priors(image, config.blur_size, config.blur_sigma)
        # The package's Adam: torch's updates, and the cosine schedule where asked.
        cosine_steps = args.inner_steps if args.inner_schedule == "cosine" else 0
        # Held layers (--frozen-layers) are not fitted, so Reptile's outer step leaves them too.
        optimizer = Adam(net.parameters_after(args.frozen_layers), args.inner_learning_rate, cosine_steps=cosine_steps)
        frozen = None
        if args.frozen_layers:
            frozen = FrozenFeatures.of(net, image, args.frozen_layers, bf16, config.fits_noise)
        for _ in range(args.inner_steps):
            outputs = run_network(net, image, bf16, noise=config.fits_noise, frozen=frozen)
            total = loss_terms(image, outputs, priors, config, noise_scale).total
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        # Reptile's outer step, decayed linearly to zero.
        step = args.outer_step * (1 - iteration / args.iterations)
        with torch.no_grad():
            for start_parameter, fitted_parameter in zip(start.parameters(), net.parameters()):
                start_parameter.add_(fitted_parameter - start_parameter, alpha=step)
            if iteration >= average_from:
                written = average
                weight = 1.0 / (iteration - average_from + 1)
                for average_parameter, start_parameter in zip(average.parameters(), start.parameters()):
                    average_parameter.add_(start_parameter - average_parameter, alpha=weight)
        if args.snapshot_every and (iteration + 1) % args.snapshot_every == 0:
            weights.write(written, args.output.with_suffix(f".{iteration + 1}.npz"))
        if iteration % 25 == 0:
            print(f"{iteration:5d}  {time.time() - began:6.0f} s  loss {total.item():.1f}", flush=True)
    return written


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=weights.LEARNED_WEIGHTS)
    parser.add_argument("--start", type=Path, help="continue from these weights (.npz)")
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--inner-steps", type=int, default=8)
    parser.add_argument("--inner-learning-rate", type=float, default=0.003)
    parser.add_argument(
        "--inner-schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="of the inner learning rate (cosine: annealed to 0 over the inner steps)",
    )
    parser.add_argument(
        "--frozen-layers",
        type=int,
        choices=range(5),
        default=0,
        help="convolutions of each branch held at the start's weights in the inner steps (the preset's frozen_layers)",
    )
    parser.add_argument("--outer-step", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the task sampling")
    parser.add_argument("--side", type=int, default=128, help="longer side of the fitted copies")
    parser.add_argument("--noise-map", choices=["fitted", "zero"], default="fitted")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="of the inner steps (auto: bf16 where the CPU runs it natively)",
    )
    parser.add_argument("--darkest", type=float, default=0.01, help="smallest exposure factor")
    parser.add_argument("--brightest", type=float, default=0.35, help="largest exposure factor")
    parser.add_argument(
        "--average-from",
        type=int,
        help="write the mean of the starts from this meta-iteration on (default: the last start)",
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=0,
        help="also write what would be written every N meta-iterations, as OUTPUT.N.npz",
    )
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    weights.write(train(args), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
