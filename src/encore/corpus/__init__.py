"""The training corpus: music21 scores → MIDI → audio (tinysoundfont) → mel spectrograms.

- :mod:`encore.corpus.builder` — ``build_corpus`` (``encore corpus build``),
- :mod:`encore.corpus.manifest` — the manifest records and ``load_manifest``,
- :mod:`encore.corpus.dataset` — ``SpectrogramDataset`` for training (torch),
- :mod:`encore.corpus.collections`, :mod:`encore.corpus.sources`,
  :mod:`encore.corpus.variation`, :mod:`encore.corpus.render`,
  :mod:`encore.corpus.pipeline`, :mod:`encore.corpus.features` — the pieces of the pipeline.

Nothing heavy is imported here (music21, torch and librosa load on use).
"""
