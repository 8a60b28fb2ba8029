"""Rendering: engines set up for a script, batches rendered into content-addressed takes, the take cache,
and the provenance rows of a run."""
