"""Whether fitting several photos at once would pay on a device: the `default` fit of B photos one
after another, against one grouped fit of all B.

The grouped fit is a prototype for this measurement only. Each photo keeps its own copy of the
fitted layers; the B copies run as one grouped convolution per layer (``groups=B``), so every Adam
step launches the convolutions once for all B photos instead of B times. Adam is elementwise, and
each photo's loss depends on its own copy alone, so the grouped fit computes the same function as
the B separate fits: the script reports the largest difference between their fitted illuminations
to show it. Only the convolutions are grouped; the loss terms still run photo by photo.

On a CPU the convolutions are most of a step and grouping saves nothing; on a GPU each small
step is mostly launch overhead, which grouping divides by B. The photos are fitted at the
preset's own size (``optimisation_side``), so they must share an aspect ratio: the default folder
is the synthetic set, seven of whose eight photos are 768x512.

Prints one JSON line and writes it to --output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rrdnet_cli import load_config, losses, pipeline, weights
from rrdnet_cli.config import Config
from rrdnet_cli.optimiser import Adam

import common

FITTED_BRANCHES = ("illumination_net", "reflectance_net")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_by_one(images: list[torch.Tensor], config: Config) -> list[torch.Tensor]:
    """Each photo's fitted illumination on its fit copy ``(1, 1, h, w)``, fitted as `default` does."""
    illuminations = []
    for image in images:
        net = pipeline.initial_network(config, image).to(image.device)
        fitted = pipeline.optimise(net, image, config)
        with torch.no_grad():
            illuminations.append(net.maps(fitted.copy, reflectance=False, noise=False)[0])
    return illuminations


def grouped_layers(config: Config, count: int, device: torch.device) -> dict[str, list[torch.Tensor]]:
    """Per fitted branch, the weights and biases of its layers after the held ones, ``count``
    copies of the start stacked along the output channels (each copy a group)."""
    start = weights.learned_network().to(device)
    layers = {}
    for name in FITTED_BRANCHES:
        branch = getattr(start, name)
        tensors = []
        for convolution in list(branch)[2 * config.frozen_layers :: 2]:
            for tensor in (convolution.weight, convolution.bias):
                repeated = tensor.detach().repeat(count, *([1] * (tensor.dim() - 1)))
                tensors.append(repeated.clone().requires_grad_(True))
        layers[name] = tensors
    return layers


def grouped(images: list[torch.Tensor], config: Config) -> list[torch.Tensor]:
    """The same fits as ``one_by_one``, run as one grouped network (``config.strategy`` full,
    the noise map held at zero, fp32: the settings of `default`)."""
    count, device = len(images), images[0].device
    start = weights.learned_network().to(device)
    targets = [pipeline.downscale(image, config.optimisation_side) for image in images]
    priors = [losses.image_priors(target, config.blur_size, config.blur_sigma) for target in targets]
    full_pixels = images[0].shape[-2] * images[0].shape[-1]
    noise_scale = (targets[0].shape[-2] * targets[0].shape[-1] / full_pixels) ** 0.5
    with torch.no_grad():
        held = [start.features(target, config.frozen_layers, noise=False) for target in targets]
    # One input per branch: the photos' held features side by side along the channels.
    inputs = [torch.cat([features[branch] for features in held], dim=1) for branch in range(len(FITTED_BRANCHES))]
    layers = grouped_layers(config, count, device)
    optimizer = Adam([t for name in FITTED_BRANCHES for t in layers[name]], config.learning_rate)

    def maps() -> list[torch.Tensor]:
        outputs = []
        for name, x in zip(FITTED_BRANCHES, inputs):
            tensors = layers[name]
            for index in range(0, len(tensors), 2):
                x = F.conv2d(x, tensors[index], tensors[index + 1], padding=1, groups=count)
                if index + 2 < len(tensors):
                    x = F.relu(x)
            outputs.append(torch.sigmoid(x))
        return outputs

    zero = torch.zeros((), device=device)
    for _ in range(config.iterations):
        illumination, reflectance = maps()
        total = zero
        for photo, (target, prior) in enumerate(zip(targets, priors)):
            outputs = (illumination[:, photo : photo + 1], reflectance[:, 3 * photo : 3 * photo + 3], zero)
            total = total + pipeline.loss_terms(target, outputs, prior, config, noise_scale).total
        # As the fit does every step (its finiteness check): on a GPU this waits for the step.
        total.item()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    with torch.no_grad():
        illumination = maps()[0]
    return [illumination[:, photo : photo + 1] for photo in range(count)]


def timed(images: list[torch.Tensor], config: Config, rounds: int) -> tuple[list[float], list[list[torch.Tensor]]]:
    """Median seconds of ``one_by_one`` and of ``grouped`` over ``rounds`` rounds that alternate
    them (after one untimed call of each), and each one's last result."""
    functions = (one_by_one, grouped)
    results = [function(images, config) for function in functions]
    seconds: list[list[float]] = [[], []]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            synchronize(images[0].device)
            began = time.perf_counter()
            results[index] = function(images, config)
            synchronize(images[0].device)
            seconds[index].append(time.perf_counter() - began)
    return [sorted(times)[len(times) // 2] for times in seconds], results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.DEFAULT_DATA / "synthetic" / "low")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--counts", default="1,2,4,7", help="comma-separated numbers of photos fitted at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", type=Path, default=common.RESULTS / "grouped_fit.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = load_config("default", device=args.device, precision="fp32")
    counts = [int(count) for count in args.counts.split(",")]
    loaded = {
        path: common.to_tensor(common.load_rgb(path))
        for path in sorted(args.data.iterdir())
        if path.suffix.lower() in (".png", ".jpg")
    }
    # A group shares one size: the photos of the folder's most common size.
    shapes = [image.shape for image in loaded.values()]
    shape = max(set(shapes), key=shapes.count)
    paths = [path for path, image in loaded.items() if image.shape == shape][: max(counts)]
    if len(paths) < max(counts):
        raise SystemExit(f"{args.data}: only {len(paths)} photos share one size, fewer than {max(counts)}")
    images = [loaded[path].to(device) for path in paths]
    rows = []
    for count in counts:
        group = images[:count]
        (alone, together), (separate, joint) = timed(group, config, args.rounds)
        difference = max((a - b).abs().max().item() for a, b in zip(separate, joint))
        rows.append(
            {
                "photos": count,
                "one_by_one_s": round(alone, 4),
                "grouped_s": round(together, 4),
                "per_photo_one_by_one_s": round(alone / count, 4),
                "per_photo_grouped_s": round(together / count, 4),
                "speed_up": round(alone / together, 3),
                "largest_illumination_difference": difference,
            }
        )
    record = {
        "benchmark": "grouped_fit",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "fit": {key: getattr(config, key) for key in ("iterations", "optimisation_side", "frozen_layers")},
        "photos": [path.name for path in paths],
        "rows": rows,
        "machine": common.machine(),
        "arguments": common.arguments_of(args),
    }
    common.publish(record, args.output)


if __name__ == "__main__":
    main()
