"""Simulated listeners that drive the real platform over HTTP, and the simulated pilot.

- :mod:`encore.sim.features`: what a listener perceives of the audio it downloads;
- :mod:`encore.sim.listeners`: hidden tastes, ratings, listening behaviours, adversaries;
- :mod:`encore.sim.population`: populations described in TOML (``populations/*.toml``);
- :mod:`encore.sim.seeds`: seed songs (corpus excerpts or synthetic music);
- :mod:`encore.sim.client`, :mod:`encore.sim.server`: the HTTP client and the server process;
- :mod:`encore.sim.config`, :mod:`encore.sim.pilot`: scale settings and the pilot itself
  (``encore simulate``; docs/pilot.md).
"""
