"""Export: a mixture's manifest materialised as shards for a trainer (:mod:`.shards`)."""
