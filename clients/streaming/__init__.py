"""Streaming-video workloads: shared video I/O (:mod:`fedlab.clients.streaming.video`) and Arena."""
