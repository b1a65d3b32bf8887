"""Dataset ingest: find, decode, de-duplicate and split labelled image folders (no TensorFlow)."""
