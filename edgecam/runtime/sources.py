"""Where frames come from: picamera2, OpenCV cameras and streams, video files, image folders.

Every source hands out RGB uint8 frames from ``read()`` and returns None when it has nothing
(end of a file, or a camera that dropped out). ``live`` sources are real-time: the capture
thread keeps only their newest frame and reopens them when they fail. A source's ``name`` and
its errors never show the password of a stream URL (``redact_url``); only ``open()`` uses it.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import cv2
import numpy as np

from edgecam.console import log
from edgecam.config.redact import redact_url
from edgecam.errors import EdgecamError
from edgecam.files import IMAGE_SUFFIXES
from edgecam.runtime.imagesize import image_size

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")
# Images are decoded at 1/2, 1/4 or 1/8 (libjpeg scales while it decodes) when the longer side
# stays at or above twice the capture size's longer side, and never above this many pixels.
MAX_IMAGE_SIDE = 4096
REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


class SourceError(EdgecamError):
    """A source that cannot be opened (no camera, missing file, unreachable stream).

    The message is redacted: whoever builds it may name the URL with its credentials.
    """

    def __init__(self, message: str):
        super().__init__(redact_url(message))


class Source:
    name = "source"
    live = False

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None: ...

    @property
    def fps(self) -> float | None:
        return None


class OpenCVSource(Source):
    """A camera index, a /dev/video device, a stream URL or a video file, through cv2.VideoCapture."""

    def __init__(self, spec: int | str, live: bool, size: tuple[int, int] | None = None):
        self.spec, self.live, self.size = spec, live, size  # spec: the real URL, only for opening
        self.name = f"camera {spec}" if isinstance(spec, int) else redact_url(str(spec))
        self._cap = None

    def open(self) -> None:
        cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: cannot open")
        if self.size:  # a request: cameras pick their nearest supported mode
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    @property
    def fps(self) -> float | None:
        value = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0.0
        return float(value) if value and 0 < value < 1000 else None


class ImageFilesSource(Source):
    """A folder or glob of still images, one frame each, in name order.

    Big JPEGs and PNGs are decoded reduced (``reduced_flag``): a 400-megapixel photo then costs
    a few megabytes instead of gigabytes (JPEG; a PNG is still decoded whole, then shrunk).
    """

    def __init__(self, paths: list[Path], name: str, size: tuple[int, int] | None = None):
        self.paths, self.name = paths, redact_url(name)
        self.wanted = min(2 * max(size), MAX_IMAGE_SIDE) if size else MAX_IMAGE_SIDE  # longer side
        self._next = 0

    def open(self) -> None:
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            frame = cv2.imread(str(path), reduced_flag(path, self.wanted))  # applies EXIF orientation
            if frame is not None:
                return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            log(f"warning: skipping {path}: cannot decode")
        return None


def reduced_flag(path: Path, wanted: int) -> int:
    """The cv2.imread flag that decodes ``path`` smallest with its longer side still >= ``wanted``."""
    size = image_size(path)  # None: not a PNG or JPEG, or a header it cannot read
    if size:
        for factor, flag in REDUCED:
            if max(size) >= wanted * factor:
                return flag
    return cv2.IMREAD_COLOR


class Picamera2Source(Source):
    """The Raspberry Pi camera via picamera2 (imported only when used)."""

    live = True

    def __init__(self, size: tuple[int, int] = (640, 480)):
        self.size, self.name = size, "picamera2"
        self._camera = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError("picamera2: not installed (sudo apt install python3-picamera2)") from None
        if not Picamera2.global_camera_info():
            raise SourceError("picamera2: no camera detected (check the ribbon cable and `rpicam-hello`)")
        camera = Picamera2()
        # "RGB888" is B, G, R in memory (OpenCV order), converted to RGB in read().
        camera.configure(camera.create_video_configuration(main={"size": self.size, "format": "RGB888"}))
        camera.start()
        self._camera = camera

    def read(self) -> np.ndarray | None:
        if self._camera is None:
            return None
        try:
            frame = self._camera.capture_array("main")
        except Exception:  # the camera stack reports failures many ways; the thread reopens
            return None
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            finally:
                self._camera = None


def _image_files(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        candidates = path.rglob("*")
    else:
        candidates = (Path(p) for p in glob.glob(pattern, recursive=True))
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def parse_source(spec: str, size: tuple[int, int] = (640, 480)) -> Source:
    """Turn a ``--source`` value into a Source (not opened yet)."""
    spec = spec.strip()
    if spec in ("picamera2", "pi", "picam"):
        return Picamera2Source(size)
    if spec.isdigit():
        return OpenCVSource(int(spec), live=True, size=size)
    if spec.lower().startswith(STREAM_SCHEMES):
        return OpenCVSource(spec, live=True)
    if spec.startswith("/dev/video"):
        return OpenCVSource(spec, live=True, size=size)
    if any(ch in spec for ch in "*?["):
        files = _image_files(spec)
        if not files:
            raise SourceError(f"{spec}: no images match")
        return ImageFilesSource(files, spec, size)
    path = Path(spec)
    if path.is_dir():
        files = _image_files(spec)
        if not files:
            raise SourceError(f"{spec}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageFilesSource(files, spec, size)
    if not path.exists():
        raise SourceError(f"{spec}: no such file, folder, camera or stream")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource([path], spec, size)
    return OpenCVSource(spec, live=False)


def open_source(spec: str = "", size: tuple[int, int] = (640, 480)) -> Source:
    """Open ``spec``, or with no spec the Pi camera, then the first OpenCV camera."""
    if spec:
        source = parse_source(spec, size)
        source.open()
        return source
    tried = []
    for source in (Picamera2Source(size), OpenCVSource(0, live=True, size=size)):
        try:
            source.open()
            return source
        except SourceError as exc:
            tried.append(str(exc))
    raise SourceError("no camera found (tried " + "; ".join(tried) + "); pass --source")


def quiet_opencv() -> None:
    """OpenCV's backends print probing noise for missing cameras; only errors matter to users."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")
