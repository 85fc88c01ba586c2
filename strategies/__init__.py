"""fedlab strategies package."""
