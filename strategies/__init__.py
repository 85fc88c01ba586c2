"""Flower strategies and strategy wrappers (Message API), one file each."""
