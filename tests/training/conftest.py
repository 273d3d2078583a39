"""Shared data for the training tests: the bundled sample set and a synthetic few thousand."""

from __future__ import annotations

from pathlib import Path

import pytest
from hammer.training.synthetic import synthetic_examples
from hammer.training.xlam import Example, load_xlam

SAMPLE = Path(__file__).resolve().parents[2] / "training" / "data" / "xlam_sample.json"


@pytest.fixture(scope="session")
def sample() -> list[Example]:
    return load_xlam(SAMPLE)


@pytest.fixture(scope="session")
def synthetic() -> list[Example]:
    return synthetic_examples(3000, seed=7)
