"""encore: a self-hosted music generation platform that learns from its listeners.

Package layout (imports point down this list):

- ``web``, ``jobs``, ``cli`` — entry points
- ``services`` — the use cases, one transaction each
- ``feedback``, ``diffusion``, ``similarity``, ``corpus``, ``audio``, ``store`` — the parts

See the README and docs/architecture.md.
"""

__version__ = "0.1.0"
