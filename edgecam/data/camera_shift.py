"""A camera-shift test set: the same labelled photos as a Raspberry Pi camera would deliver them.

Photos on the web are sharp, well exposed, white-balanced, centred and level; a Pi camera's frames
are often none of these. ``make_shift_set`` copies a folder of label folders and passes every photo
through two or three of the effects below, chosen and parameterised by a seeded generator keyed by
the photo's bytes, so the set is reproducible byte for byte and has the source's images and labels.

Each effect is a plain function ``(rgb uint8 HxWx3, rng) -> rgb uint8``. Its parameter ranges
(``RANGES``) come from what the camera does, not from any accuracy target; the docstrings say why.
Sizes are relative to the photo's short side, so they mean the same on a 240 px or a 500 px photo.
Blur, exposure, noise and white balance are applied in linear light, as they happen in the camera.
"""

from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np

VERSION = 1  # changes whenever the pixels for a given seed change
KIND = "edgecam camera-shift set"
SAVE_QUALITY = 95  # JPEG quality of a file whose last effect is not ``jpeg`` (what picamera2 saves)

# Effect -> parameter -> (low, high). "+-" parameters get a random sign on top of their magnitude.
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "off_centre": {"crop": (0.6, 0.85), "offset": (0.5, 1.0), "direction_deg": (0.0, 360.0)},
    "tilt": {"roll_deg+-": (3.0, 15.0), "pitch_deg+-": (0.0, 10.0)},
    "defocus": {"radius": (0.004, 0.012)},
    "motion_blur": {"length": (0.005, 0.025), "angle_deg": (0.0, 180.0)},
    "low_resolution": {"short_side_px": (80.0, 160.0)},
    "low_light": {"exposure": (0.15, 0.5), "shot_noise": (0.002, 0.005)},
    "sensor_noise": {"shot_noise": (0.001, 0.006), "read_noise": (0.002, 0.006)},
    "colour_cast": {"scene_kelvin": (4000.0, 6500.0), "mired_error+-": (10.0, 40.0)},
    "jpeg": {"quality": (15.0, 40.0)},
}
# The order a camera applies them in: framing, optics, capture size, exposure, sensor, ISP, encoder.
ORDER = tuple(RANGES)
INTEGER_PARAMS = {"short_side_px", "quality"}


# -- the effects -------------------------------------------------------------------------------------
def off_centre(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The object is not where the camera points: a crop of 60-85% of each side, pushed 50-100% of the
    way towards an edge, so the object sits up to a third of the frame off-centre and partly out of it
    (the runtime centre-crops, so this is what a fixed camera sees of a flower beside its aim)."""
    return _apply("off_centre", rgb, draw("off_centre", rng))


def tilt(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera mounted by hand on its ribbon cable: rolled 3-15 degrees and pitched up to 10 degrees
    (keystone), through the 62-degree lens of a Pi Camera v2; cropped to the largest level frame
    with the photo's aspect that the tilted view covers (no invented borders)."""
    return _apply("tilt", rgb, draw("tilt", rng))


def defocus(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fixed-focus Pi Camera v1/v2 lens (3 mm, f/2, focused near 1 m) on a flower 8-30 cm away, or a
    Camera Module 3 autofocus that hunted: a disc blur of radius 0.4-1.2% of the short side."""
    return _apply("defocus", rgb, draw("defocus", rng))


def motion_blur(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 1/15-1/8 s indoor exposure with a swaying flower or a hand-held camera: a straight streak of
    0.5-2.5% of the short side at any angle."""
    return _apply("motion_blur", rgb, draw("motion_blur", rng))


def low_resolution(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 320x240 stream (what a Pi Zero keeps up with) in which the object spans a third to two thirds
    of the frame: 80-160 px across the short side, upscaled again as the runtime does for its 224 px
    input. A photo already smaller than that is shrunk by at least 20%."""
    return _apply("low_resolution", rgb, draw("low_resolution", rng))


def low_light(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indoors at dusk the auto-exposure runs out of shutter time and gain: 1-2.7 stops under (15-50% of
    the light), with the shot noise of the few photons left (about 3-6 DN at the darkened mid grey)."""
    return _apply("low_light", rgb, draw("low_light", rng))


def sensor_noise(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small sensor (1.12-1.4 um pixels) at analogue gain 4-16 (ISO ~400-1600) after the ISP's
    denoising: signal-dependent shot noise plus read noise, std about 4-10 DN at mid grey, per channel."""
    return _apply("sensor_noise", rgb, draw("sensor_noise", rng))


def colour_cast(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Auto white balance misjudging the light: a scene lit at 4000-6500 K balanced for a colour
    temperature 10-40 mired off (about 300-1500 K near daylight; mixed or LED light does this)."""
    return _apply("colour_cast", rgb, draw("colour_cast", rng))


def jpeg(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MJPEG streamed over Wi-Fi by a Pi (motion, mjpg-streamer, an IP-camera app): quality 15-40 with
    4:2:0 chroma subsampling, i.e. visible 8x8 blocks and colour bleeding."""
    return _apply("jpeg", rgb, draw("jpeg", rng))


EFFECTS = {f.__name__: f for f in (off_centre, tilt, defocus, motion_blur, low_resolution, low_light,
                                   sensor_noise, colour_cast, jpeg)}


# -- parameters ----------------------------------------------------------------------------------------
def draw(effect: str, rng: np.random.Generator) -> dict[str, float | int]:
    """Random parameters for ``effect`` within RANGES, rounded as camera_shift.json records them."""
    params: dict[str, float | int] = {}
    for key, (low, high) in RANGES[effect].items():
        value = rng.uniform(low, high)
        if key.endswith("+-"):
            key, value = key[:-2], value * (1 if rng.random() < 0.5 else -1)
        params[key] = int(round(value)) if key in INTEGER_PARAMS else round(float(value), 4)
    return params


def image_rng(seed: int, digest: str) -> np.random.Generator:
    """The generator for one photo: a function of the seed and the photo's bytes only (like view_rng)."""
    key = hashlib.sha256(f"camera-shift:{VERSION}:{seed}:{digest}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def choose(rng: np.random.Generator) -> list[tuple[str, dict]]:
    """Two or three distinct effects, in camera order, each with its parameters."""
    count = int(rng.integers(2, 4))
    picked = sorted(rng.choice(len(ORDER), size=count, replace=False).tolist())
    return [(ORDER[i], draw(ORDER[i], rng)) for i in picked]


def shift_image(rgb: np.ndarray, seed: int, digest: str) -> tuple[bytes, list[dict]]:
    """The shifted photo as JPEG bytes, and its effects as [{"effect": name, **params}, ...].

    A ``jpeg`` effect is the file itself (encoded once at its quality); otherwise the file is saved
    at SAVE_QUALITY, as a camera app would.
    """
    steps = choose(image_rng(seed, digest))
    quality = SAVE_QUALITY
    for name, params in steps:
        if name == "jpeg":  # always last in ORDER
            quality = int(params["quality"])
        else:
            rgb = _apply(name, rgb, params)
    return encode_jpeg(rgb, quality), [{"effect": name, **params} for name, params in steps]


def _apply(effect: str, rgb: np.ndarray, params: dict) -> np.ndarray:
    return _APPLY[effect](np.ascontiguousarray(rgb), **params)


# -- how each is done ------------------------------------------------------------------------------------
_LINEAR = np.array([c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
                    for c in np.arange(256) / 255.0], dtype=np.float32)


def to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 -> linear light float32 in 0..1."""
    return _LINEAR[rgb]


def to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light (clipped to 0..1) -> sRGB uint8."""
    x = np.clip(linear, 0.0, 1.0)
    srgb = np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(np.rint(srgb * 255.0), 0, 255).astype(np.uint8)


def _off_centre(rgb, crop, offset, direction_deg):
    h, w = rgb.shape[:2]
    ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
    angle = math.radians(direction_deg)
    left = round((w - cw) / 2 * (1 + offset * math.cos(angle)))
    top = round((h - ch) / 2 * (1 + offset * math.sin(angle)))
    return np.ascontiguousarray(rgb[top : top + ch, left : left + cw])


def _tilt(rgb, roll_deg, pitch_deg):
    h, w = rgb.shape[:2]
    f = (w / 2) / math.tan(math.radians(62.2 / 2))  # Pi Camera v2 horizontal field of view
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    r = cv2.Rodrigues(np.array([math.radians(pitch_deg), 0.0, 0.0]))[0] @ \
        cv2.Rodrigues(np.array([0.0, 0.0, math.radians(roll_deg)]))[0]
    to_src = k @ r @ np.linalg.inv(k)  # output pixel -> source pixel
    centre = to_src @ np.array([w / 2, h / 2, 1.0])
    shift = np.array([[1, 0, w / 2 - centre[0] / centre[2]], [0, 1, h / 2 - centre[1] / centre[2]], [0, 0, 1]])
    to_src = shift @ to_src  # still aimed at the object: the photo's centre stays the centre
    scale = _largest_inside(to_src, w, h)
    ow, oh = max(1, round(w * scale)), max(1, round(h * scale))
    place = np.array([[1, 0, (w - ow) / 2], [0, 1, (h - oh) / 2], [0, 0, 1]])
    return cv2.warpPerspective(rgb, to_src @ place, (ow, oh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def _largest_inside(to_src: np.ndarray, w: int, h: int) -> float:
    """The largest s so that the centred s*w x s*h output box maps inside the w x h source."""
    def inside(s: float) -> bool:
        xs, ys = w / 2 * np.array([-s, s, s, -s]) + w / 2, h / 2 * np.array([-s, -s, s, s]) + h / 2
        p = to_src @ np.stack([xs, ys, np.ones(4)])
        px, py = p[0] / p[2], p[1] / p[2]
        return bool(np.all((px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)))

    low, high = 0.05, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if inside(mid) else (low, mid)
    return low


def _blur(rgb: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve in linear light (light adds up on the sensor, not sRGB values)."""
    kernel = (kernel / kernel.sum()).astype(np.float32)
    return to_srgb(cv2.filter2D(to_linear(rgb), -1, kernel, borderType=cv2.BORDER_REFLECT_101))


def _supersampled(draw_shape, size: int, ss: int = 8) -> np.ndarray:
    """A size x size kernel drawn 8x larger and area-averaged down (anti-aliased sub-pixel shapes)."""
    canvas = np.zeros((size * ss, size * ss), np.float32)
    draw_shape(canvas, ss)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def _defocus(rgb, radius):
    r = max(0.5, radius * min(rgb.shape[:2]))
    size = 2 * math.ceil(r) + 1
    disc = _supersampled(lambda c, ss: cv2.circle(c, (size * ss // 2, size * ss // 2), round(r * ss), 1.0, -1), size)
    return _blur(rgb, disc)


def _motion_blur(rgb, length, angle_deg):
    n = max(1.0, length * min(rgb.shape[:2]))
    size = 2 * math.ceil(n / 2) + 1
    dx, dy = math.cos(math.radians(angle_deg)) * n / 2, math.sin(math.radians(angle_deg)) * n / 2

    def line(canvas, ss):
        c = size * ss / 2
        cv2.line(canvas, (round(c - dx * ss), round(c - dy * ss)), (round(c + dx * ss), round(c + dy * ss)),
                 1.0, max(1, ss // 2))

    return _blur(rgb, _supersampled(line, size))


def _low_resolution(rgb, short_side_px):
    h, w = rgb.shape[:2]
    scale = min(short_side_px / min(h, w), 0.8)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _noise_rng(rgb: np.ndarray, *params: float) -> np.random.Generator:
    """Noise seeded by the pixels and parameters, so one call's result is a pure function of its inputs."""
    key = hashlib.sha256(rgb.tobytes() + repr(params).encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def _noisy(linear: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian sensor noise in linear light: variance = shot * signal + read**2."""
    std = np.sqrt(shot * np.maximum(linear, 0.0) + read * read)
    return linear + std * rng.standard_normal(linear.shape, dtype=np.float32)


def _low_light(rgb, exposure, shot_noise):
    dark = to_linear(rgb) * exposure
    return to_srgb(_noisy(dark, shot_noise, 0.003, _noise_rng(rgb, exposure, shot_noise)))


def _sensor_noise(rgb, shot_noise, read_noise):
    return to_srgb(_noisy(to_linear(rgb), shot_noise, read_noise, _noise_rng(rgb, shot_noise, read_noise)))


def white_point(kelvin: float) -> np.ndarray:
    """Linear sRGB of a Planckian light at ``kelvin`` (Kim et al. 2002 locus), green = 1."""
    t = float(np.clip(kelvin, 1667.0, 25000.0))
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    xyz = np.array([x / y, 1.0, (1 - x - y) / y])
    rgb = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]) @ xyz
    return rgb / rgb[1]


def _colour_cast(rgb, scene_kelvin, mired_error):
    balanced_for = 1e6 / (1e6 / scene_kelvin + mired_error)
    gains = (white_point(scene_kelvin) / white_point(balanced_for)).astype(np.float32)
    return to_srgb(to_linear(rgb) * gains)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _jpeg(rgb, quality):
    return decode_jpeg(encode_jpeg(rgb, quality))


_APPLY = {"off_centre": _off_centre, "tilt": _tilt, "defocus": _defocus, "motion_blur": _motion_blur,
          "low_resolution": _low_resolution, "low_light": _low_light, "sensor_noise": _sensor_noise,
          "colour_cast": _colour_cast, "jpeg": _jpeg}
