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


@dataclass(frozen=True)
class Preprocessing:
    """Centre-crop to the input's aspect, then resize: area averaging for big shrinks, else bilinear.

    Area averaging only where it matters (shrinking ``area_from`` times or more, where bilinear
    would alias); for smaller steps bilinear looks the same and costs a tenth, which counts per
    frame. ``version`` changes whenever the pixels this produces change (it keys caches).
    """

    fit: str = "center_crop"
    area_from: float = 2.0
    version: int = 2

    def box(self, height: int, width: int, aspect: float) -> tuple[int, int, int, int]:
        """(top, left, h, w) of the largest centred box with ``aspect`` = w / h."""
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
        """HxWx3 uint8 → ``size`` = (height, width) uint8, centre-cropped so nothing is stretched."""
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
        return (f"uint8 RGB pixels, centre-cropped to the input's aspect, resized with area averaging when "
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
        if spec.fit != "center_crop" or not known or spec.version != cls().version:  # another version: other pixels
            raise ModelError(f"preprocessing {description!r} is not supported by this edgecam; upgrade edgecam")
        return spec


PREPROCESSING = Preprocessing()


def fit_to_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The default rule (what edgecam trains and exports with) applied to one image."""
    return PREPROCESSING.apply(rgb, size)
