"""The model file format that joins the two halves: TFLite metadata (labels, normalisation) read
and written with LiteRT's schema, flatbuffers and the standard library (no TensorFlow)."""
