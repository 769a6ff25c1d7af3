"""awing-jax: Adaptive Wing loss and Wing loss face alignment in JAX/Flax."""

__version__ = "0.1.0"
