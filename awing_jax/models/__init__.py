"""Face-alignment networks."""
