"""The contact sheet: one picture that explains a run.

Seven panels side by side (input, result, illumination L, adjusted illumination L^gamma,
reflectance R, noise N, and what the denoising removed from the result), each labelled, over a plot
of the loss terms against the step. Drawn with Pillow alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import images
from .light import mean_brightness
from .result import LOSS_COLUMNS, Enhancement

PANEL_SIZE = 256
MARGIN = 12
LABEL_HEIGHT = 22
TITLE_HEIGHT = 28
PLOT_HEIGHT = 240
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
GRID = (225, 225, 225)
# One colour per loss column (reconstruction, illumination, reflectance, noise, total).
CURVE_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (20, 20, 20))


def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` px, for labels on sheets."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        # Pillow without FreeType has only its small bitmap font.
        return ImageFont.load_default()


def noise_for_viewing(noise: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``noise`` ``(1, 3, H, W)`` (or any signed map of that shape, such as what the denoising
    removed) mapped to [0, 1] with 0 at mid-grey; returns it and the range.

    Symmetric around zero (unlike a min-max stretch), so grey means "no noise" in every sheet.
    """
    extent = float(noise.abs().max().clamp_min(1e-6))
    return (noise / (2 * extent) + 0.5).clamp(0, 1), extent


def _thumbnail(pixels: torch.Tensor, size: int) -> Image.Image:
    """``pixels`` ``(1, C, H, W)`` scaled so the longer side is ``size``: smoothly when shrinking,
    as blocks when enlarging (a tiny image's pixels stay visible as pixels)."""
    image = images.to_pil(pixels.detach().float().cpu()).convert("RGB")
    scale = size / max(image.size)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    return image.resize(new_size, resample)


def _loss_plot(losses: np.ndarray, width: int, height: int, font) -> Image.Image:
    """Loss terms ``(steps + 1, 5)`` against the step on a log scale, with a legend."""
    plot = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(plot)
    left, right, top, bottom = 64, width - 250, 22, height - 34
    draw.text((left, 2), "loss terms (unweighted) against the step, log scale", fill=INK, font=font)
    losses = np.asarray(losses, dtype=np.float64)
    # A term that is zero throughout (the noise term when N is held at zero) has no place on a log
    # scale: it is left out of the plot and its range, and only named in the legend.
    plotted = [bool(np.any(losses[:, column] != 0)) for column in range(losses.shape[1])]
    values = np.log10(np.clip(losses, 1e-12, None))
    finite = values[:, plotted][np.isfinite(values[:, plotted])]
    low, high = (math.floor(finite.min()), math.ceil(finite.max())) if finite.size else (0, 1)
    high = max(high, low + 1)
    steps = max(len(losses) - 1, 1)

    def x_of(step: float) -> float:
        return left + (right - left) * step / steps

    def y_of(value: float) -> float:
        return bottom - (bottom - top) * (value - low) / (high - low)

    decade_step = max(1, math.ceil((high - low) / 6))
    for decade in range(low, high + 1, decade_step):
        y = y_of(decade)
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((left - 8, y), f"1e{decade}", fill=INK, font=font, anchor="rm")
    for step in sorted({0, steps // 2, steps}):
        draw.text((x_of(step), bottom + 6), str(step), fill=INK, font=font, anchor="mt")
    draw.text(((left + right) / 2, bottom + 20), "step", fill=INK, font=font, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=INK)
    for column, (name, colour) in enumerate(zip(LOSS_COLUMNS, CURVE_COLOURS)):
        points = [(x_of(step), y_of(value)) for step, value in enumerate(values[:, column])]
        if plotted[column] and len(points) == 1:
            x, y = points[0]
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        elif plotted[column]:
            draw.line(points, fill=colour, width=3 if name == "total" else 2, joint="curve")
        legend_y = top + 6 + 20 * column
        draw.line([(right + 14, legend_y + 7), (right + 40, legend_y + 7)], fill=colour, width=3)
        last = losses[-1, column]
        label = f"{name} {last:.3g}" if plotted[column] else f"{name} 0 throughout"
        draw.text((right + 46, legend_y), label, fill=INK, font=font)
    return plot


def contact_sheet(enhancement: Enhancement, title: str = "", *, panel_size: int = PANEL_SIZE) -> Image.Image:
    """The sheet for ``enhancement`` as an RGB image."""
    noise_view, extent = noise_for_viewing(enhancement.noise)
    removed_view, removed_extent = noise_for_viewing(enhancement.removed_for("a contact sheet"))
    gamma = enhancement.gamma
    panels = [
        (enhancement.image, f"input (mean {mean_brightness(enhancement.image):.3f})"),
        (enhancement.result, f"result (mean {mean_brightness(enhancement.result):.3f})"),
        (enhancement.illumination, "illumination L"),
        (
            enhancement.adjusted_illumination,
            "light after the tone curve" if enhancement.light.local else f"adjusted L^{gamma:.3g}",
        ),
        (enhancement.reflectance_for("a contact sheet"), "reflectance R"),
        (noise_view, f"noise N (grey 0, ±{extent:.2g})" if enhancement.noise.any() else "noise N (held at 0)"),
        (removed_view, f"denoised away (±{removed_extent:.2g})"),
    ]
    thumbnails = [(_thumbnail(pixels, panel_size), label) for pixels, label in panels]
    panel_width = max(image.width for image, _ in thumbnails)
    panel_height = max(image.height for image, _ in thumbnails)
    width = MARGIN + len(thumbnails) * (panel_width + MARGIN)
    height = TITLE_HEIGHT + panel_height + LABEL_HEIGHT + PLOT_HEIGHT + 2 * MARGIN
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, small = label_font(16), label_font(13)
    draw.text((MARGIN, 6), title, fill=INK, font=font)
    for index, (image, label) in enumerate(thumbnails):
        x = MARGIN + index * (panel_width + MARGIN)
        sheet.paste(image, (x + (panel_width - image.width) // 2, TITLE_HEIGHT))
        draw.text((x + panel_width / 2, TITLE_HEIGHT + panel_height + 4), label, fill=INK, font=small, anchor="mt")
    plot = _loss_plot(enhancement.losses, width - 2 * MARGIN, PLOT_HEIGHT, small)
    sheet.paste(plot, (MARGIN, TITLE_HEIGHT + panel_height + LABEL_HEIGHT + MARGIN))
    return sheet


def sheet_title(name: str, enhancement: Enhancement, iterations: Optional[int] = None) -> str:
    """``photo.jpg · 300 steps · gamma 0.52 (auto, target brightness 0.45)``."""
    steps = len(enhancement.losses) - 1 if iterations is None else iterations
    light = f"local light, gain {enhancement.light.key_gain:.3g} at the key" if enhancement.light.local else ""
    parts = [name, f"{steps} steps", light or f"gamma {enhancement.gamma:.3g}"]
    if enhancement.light.exposure != 1.0:
        parts[-1] += f" · exposure {enhancement.light.exposure:.3g}"
    target = enhancement.target_brightness
    if target is not None:
        parts[-1] += f" (auto, target brightness {target:.3g}"
        if not enhancement.light.reached:
            parts[-1] += f", out of reach: {enhancement.brightness:.3f}"
        parts[-1] += ")"
    return " · ".join(part for part in parts if part)


def save_contact_sheet(enhancement: Enhancement, path: str | Path, title: str = "") -> None:
    """Write the sheet as PNG (or the format ``path``'s extension names), atomically."""
    images.save_image(contact_sheet(enhancement, title), Path(path))
