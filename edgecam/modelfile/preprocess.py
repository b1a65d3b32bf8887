"""How a photo or camera frame becomes the model's input: one rule, stated in every model file.

Training (embeddings, augmentation, calibration), evaluation and the camera loop all call
``fit_to_input``, so a photo and the same scene from the camera reach the model through
identical pixels. ``Preprocessing.describe`` is what the exporter writes into the model's
metadata, and ``Preprocessing.from_description`` is how the runtime reads it back: the
metadata says exactly what the code does. Normalisation is not done here: edgecam models carry
it inside the graph (uint8 RGB in).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgecam.errors import ModelError

_INTERPOLATIONS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR}
# How a frame is fitted to the input's aspect: "center_crop" keeps the largest centred box of that
# aspect (nothing stretched, the edges lost); "resize" keeps the whole frame and stretches it.
FITS = ("center_crop", "resize")


@dataclass(frozen=True)
class Preprocessing:
    """Fit to the input's aspect (``FITS``), then resize: area averaging for big shrinks, else bilinear.

    Area averaging only where it matters (shrinking ``area_from`` times or more, where bilinear
    would alias); for smaller steps bilinear looks the same and costs a tenth, which counts per
    frame. ``version`` changes whenever the resize rule changes; ``key`` names the pixels (it keys caches).
    """

    fit: str = "center_crop"
    area_from: float = 2.0
    version: int = 2

    @property
    def key(self) -> str:
        """Changes whenever the pixels this rule produces change (embedding caches are keyed by it)."""
        return f"{self.fit}-v{self.version}-{self.area_from:g}"

    def box(self, height: int, width: int, aspect: float) -> tuple[int, int, int, int]:
        """(top, left, h, w) of the part of the frame that is resized: the largest centred box with
        ``aspect`` = w / h for "center_crop", the whole frame for "resize"."""
        if self.fit == "resize":
            return 0, 0, height, width
        if width >= height * aspect:
            w = max(1, round(height * aspect))
            return 0, (width - w) // 2, height, w
        h = max(1, round(width / aspect))
        return (height - h) // 2, 0, h, width

    def interpolation(self, crop_hw: tuple[int, int], out_hw: tuple[int, int]) -> str:
        """"area" or "bilinear" for resizing a crop of ``crop_hw`` to ``out_hw``."""
        shrinks = crop_hw[0] >= self.area_from * out_hw[0] and crop_hw[1] >= self.area_from * out_hw[1]
        return "area" if shrinks else "bilinear"

    def apply(self, rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """HxWx3 uint8 → ``size`` = (height, width) uint8: the fitted box, resized."""
        out_h, out_w = size
        top, left, h, w = self.box(rgb.shape[0], rgb.shape[1], out_w / out_h)
        crop = rgb[top : top + h, left : left + w]
        if (h, w) == (out_h, out_w):
            return np.ascontiguousarray(crop)
        method = _INTERPOLATIONS[self.interpolation((h, w), (out_h, out_w))]
        return cv2.resize(crop, (out_w, out_h), interpolation=method)

    def describe(self, size: tuple[int, int]) -> dict:
        """The rule as plain JSON, for the model's metadata (``edgecam.json``)."""
        return {
            "version": self.version,
            "input": {"height": size[0], "width": size[1], "color": "RGB", "dtype": "uint8"},
            "fit": self.fit,
            "resize": {"method": "area", "when_shrinking_at_least": self.area_from, "otherwise": "bilinear"},
            "scaling": "inside the model",
        }

    def summary(self) -> str:
        """One line for people (the model's description)."""
        fitted = "the whole frame" if self.fit == "resize" else "centre-cropped to the input's aspect,"
        return (f"uint8 RGB pixels, {fitted} resized with area averaging when "
                f"shrinking {self.area_from:g}x or more, else bilinear; scaling is inside the model")

    @classmethod
    def from_description(cls, description: dict) -> "Preprocessing":
        """The rule a model's metadata states; ModelError if this runtime does not know it."""
        try:
            spec = cls(fit=description["fit"], area_from=float(description["resize"]["when_shrinking_at_least"]),
                       version=int(description["version"]))
            known = (description["resize"]["method"], description["resize"]["otherwise"]) == ("area", "bilinear")
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"preprocessing metadata not understood: {description!r}") from None
        if spec.fit not in FITS or not known or spec.version != cls().version:  # another version: other pixels
            raise ModelError(f"preprocessing {description!r} is not supported by this edgecam; upgrade edgecam")
        return spec


PREPROCESSING = Preprocessing()


def fit_to_input(rgb: np.ndarray, size: tuple[int, int], fit: str = PREPROCESSING.fit) -> np.ndarray:
    """The rule with ``fit`` (edgecam's default: the one for models that state none) on one image."""
    return (PREPROCESSING if fit == PREPROCESSING.fit else Preprocessing(fit=fit)).apply(rgb, size)
