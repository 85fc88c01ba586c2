"""Diff-SR: arbitrary-scale super-resolution on a federatedly trained diffusion prior."""
