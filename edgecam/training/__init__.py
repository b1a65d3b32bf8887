"""Workstation side: the only package that imports TensorFlow."""
