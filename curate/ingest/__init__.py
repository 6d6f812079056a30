"""Ingest: which files a run reads (:mod:`.inputs`), reading them as batches
(:mod:`.readers`) and the provenance every row carries from then on (:mod:`.provenance`)."""
