"""How good a ``.tflite`` classifier is on labelled images, measured with the edge runtime.

No TensorFlow and no matplotlib at import: ``edgecam evaluate`` runs on a Pi, and plots are
drawn only where matplotlib is installed.
"""
