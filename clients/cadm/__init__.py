"""CaDM: codec-aware diffusion restoration of compressed video streams (see docs/cadm.md)."""
