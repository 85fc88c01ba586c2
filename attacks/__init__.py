"""fedlab attacks package."""
