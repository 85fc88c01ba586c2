"""fedlab clients package."""
