"""fedlab: federated learning research on Flower."""

__version__ = "0.2.0"
