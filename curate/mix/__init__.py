"""Mixtures: the recipe file (:mod:`.recipe`), the one DuckDB query it becomes
(:mod:`.sql`) and the command that runs it and writes the manifest (:mod:`.build`)."""
