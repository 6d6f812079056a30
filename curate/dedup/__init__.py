"""Near-duplicates: caption texts (:mod:`.text`), the embedding cache (:mod:`.cache`; the
embedders themselves are the shared :mod:`curate.embed`), FAISS search (:mod:`.index`), the
neighbour table (:mod:`.neighbors`), groups (:mod:`.groups`) and the ``curate dedup``
command (:mod:`.run`)."""
