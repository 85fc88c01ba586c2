"""FreePIH: training-free painterly harmonization on a federatedly trained, style-conditioned
diffusion prior (arXiv 2311.14926, with a style label in place of the paper's text prompt)."""
