"""Zero-shot learning workloads: ParsNets, (AR)^2, ESZSL and MLP baselines, xlsa17 and offline
benchmarks."""
