"""fedlab: federated learning research on Flower."""

__version__ = "0.1.0"
