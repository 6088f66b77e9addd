"""The machinery under the programs: the Keras backend and devices (backend, distribute), the
callbacks of a run, training (train, resume, fit: no argv) and inference (load a checkpoint, the
compiled forward pass, predictions of a split). `reproduce.train`, `reproduce.evaluate`,
`reproduce.predict`, `reproduce.localize`, the study and the benchmarks call it; it calls none of
them."""
