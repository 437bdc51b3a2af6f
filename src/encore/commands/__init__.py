"""Sub-commands of the ``encore`` CLI, one module per area (see ``encore.cli``)."""
