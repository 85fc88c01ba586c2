"""Self-supervised clients: SimCLR/BYOL/SimSiam workload, encoders, FedFoA client side."""
