"""Scoring: chains (:mod:`.chain`), the one decision rule (:mod:`.decision`), the filters
(:mod:`.filters`), one batch scored (:mod:`.frame`), the runner that writes a run
(:mod:`.runner`, :mod:`.workers`), its statistics (:mod:`.stats`) and ``decide``
(:mod:`.decide`)."""
