"""Near-duplicates: caption texts (:mod:`.text`), embedders (:mod:`.embed`) and their cache
(:mod:`.cache`), FAISS search (:mod:`.index`), the neighbour table (:mod:`.neighbors`),
groups (:mod:`.groups`) and the ``curate dedup`` command (:mod:`.run`)."""
