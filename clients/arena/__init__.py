"""Arena: federated detector training and ViT token-sparse video streaming (see docs/arena.md)."""
