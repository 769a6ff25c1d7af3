"""TFDS builders for the face-alignment benchmarks (built from manually downloaded files)."""
