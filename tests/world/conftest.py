"""Shared set-up of the world-model tests."""

import pytest
import torch

from world.mvdt import MVDTModel, preset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from threads, and on the shared 2-core machine a 2-thread pool
    # contending with other jobs is many times slower.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny():
    """A randomly initialised tiny MVDT (seeded), in eval mode."""
    torch.manual_seed(0)
    return MVDTModel(preset("tiny")).eval()


@pytest.fixture(scope="module", params=["yume-5b-720p", "yume-i2v-540p"])
def wan_pair(request):
    """(family, transformer, VAE): tiny random Wan models of the 5B and the 14B-I2V structure."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from world.wan import tiny_family

    fam = tiny_family(request.param)
    torch.manual_seed(0)
    return fam, WanTransformer3DModel(**fam.transformer).eval(), AutoencoderKLWan(
        **fam.vae).eval()
