"""edgecam: teach a camera to recognise your own things.

Two halves joined only by a model file: ``edgecam.training`` (TensorFlow, workstation) writes a
self-describing ``.tflite``; ``edgecam.runtime`` (LiteRT + numpy + OpenCV, Raspberry Pi) runs it.
"""

__version__ = "0.1.0"
