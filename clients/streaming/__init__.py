"""Streaming-video workloads: shared video I/O (:mod:`clients.streaming.video`) and Arena."""
