"""Shared fixtures: tiny models and images, so the suite stays fast on 2 CPU cores."""

import os
import sys

import numpy as np
import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Golden vectors written by the original code (tests/golden/README.md), kept in the repo so
# that a clone with nothing beside it passes its own tests.
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden')


def random_images(n, shape, seed=0):
    """Smooth-ish random uint8 images with both extremes present (edge bins exercised)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n,) + tuple(shape)).astype(np.uint8)
    x[:, 0, 0] = 0
    x[:, -1, -1] = 255
    return x


@pytest.fixture
def golden_dir():
    if not os.path.isdir(GOLDEN):
        pytest.fail('golden vectors not found at %s' % GOLDEN)
    return GOLDEN
