"""Procedural paintings: names from a style or texture argument stay inside their lists."""


def test_a_texture_name_is_never_looked_up_outside_the_bundled_three():
    import numpy as np
    import pytest
    from fedlab.clients.harmonization.data import stylize

    from fedlab.errors import FedlabError

    with pytest.raises(FedlabError, match="unknown texture 'download_all'"):
        stylize(np.zeros((8, 8, 3), np.float32), "canvas", texture="download_all")
