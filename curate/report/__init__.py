"""Reports: the notebook API over runs and mixtures (:mod:`.explore`) and the HTML report
built from it (:mod:`.html`)."""
