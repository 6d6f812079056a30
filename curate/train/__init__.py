"""Train: learned caption-quality filters from a few hundred labels (:mod:`.labels` reads
and splits them, :mod:`.fit` fits fastText or a logistic probe, :mod:`.metrics` scores the
held-out part against ``specificity``, :mod:`.run` writes the model folder that the
``classifier`` filter reads, :mod:`.sample` picks captions to label next)."""
