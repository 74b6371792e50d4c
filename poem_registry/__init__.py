"""POEM Registry."""
