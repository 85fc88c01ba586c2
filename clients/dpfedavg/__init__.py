"""The ``dpfedavg`` app: FedAvg (or any averaging strategy) under central or local DP."""
