"""fedlab: federated learning research on Flower."""

__version__ = "0.3.0"
