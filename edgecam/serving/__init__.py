"""The web part: a small standard-library HTTP server for live pages (``edgecam run --serve``,
``edgecam collect --serve``) and the review of kept frames (``edgecam review``).

Standard library + numpy + OpenCV only, like the runtime, so it runs on the Pi. The camera
loop never waits for a viewer: it hands its newest frame to a slot (``slots.py``) and each
client thread sends what it can (``server.py``).
"""
