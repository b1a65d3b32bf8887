"""The edge runtime: imports only numpy, OpenCV, LiteRT and the standard library — never TensorFlow."""
