"""The Keras 3 sequence model, its training core, evaluation, artifact and scorer."""
