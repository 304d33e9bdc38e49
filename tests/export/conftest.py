"""Fixtures of the export tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def serving_default(tiny_savedmodel):
    """The tiny model's `serving_default`, loaded once for every test that calls it."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tiny_savedmodel(1)))
    # A signature of a garbage-collected SavedModel object stops working: this frame holds
    # `loaded` until the session ends.
    yield loaded.signatures["serving_default"]
