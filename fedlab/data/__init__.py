"""Offline datasets, local-path loaders and partitioners."""
