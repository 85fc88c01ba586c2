"""fedlab clients supervised package."""
