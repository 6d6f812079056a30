"""Audit: why a sample was or was not chosen (``explain``), whether a mixture still matches
its runs (``verify``) and how two mixtures differ (``diff``)."""
