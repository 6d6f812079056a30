"""Per-row signals of what captioning models get wrong, computed on ``caption_clean``.

Three columns, added to every scored row (the run statistics in
:mod:`curate.scoring.stats` count them, with the share of captions that open alike):

* ``signal__truncated`` — the caption stops mid-sentence: it does not end in terminal
  punctuation, and either it has an earlier full sentence (so it was written in sentences,
  as model captions are) or it ends in a comma or a word that cannot end a sentence ("and",
  "the", "of"). A short human caption without a full stop ("a dog on a beach") is not
  truncated.
* ``signal__hedges`` — how many hedging phrases it holds ("appears to be", "possibly",
  "likely", "might be"): a model unsure of what it sees.
* ``signal__markdown`` — markdown left in the text (bold, headings, bullets, numbered
  items); 0 after the ``markdown`` transform.
"""
from __future__ import annotations

import polars as pl

from curate.clean.model import MARKDOWN

TRUNCATED = "signal__truncated"
HEDGES = "signal__hedges"
MARKDOWN_LEFT = "signal__markdown"
SIGNALS = (TRUNCATED, HEDGES, MARKDOWN_LEFT)

#: Terminal punctuation, possibly followed by closing quotes or brackets.
_END = r"[.!?…。！？][\"'”’»)\]]*\s*$|[\"'”’»)\]]\s*$"
#: A second sentence: terminal punctuation, a space, a capital letter.
_SENTENCE = r"[.!?][\"'”’)]*\s+\p{Lu}"
#: Endings that no sentence has (words that can close one, "lights on", "in front of her",
#: are not listed).
_DANGLING = (r"(?i)(?:[,;:]|(?-u:\b)(?:and|or|but|the|a|an|of|with|to|for|by|from|is|are|was|were"
             r"|its|their|which|while|into|onto|as))\s*$")
#: Hedging phrases, counted case-insensitively on the rows that :data:`_HEDGE_SCREEN` selects.
HEDGE_WORDS = ["appears to", "appear to", "seems to", "seem to", "possibly", "perhaps", "probably",
               "likely", "might be", "may be", "could be", "presumably", "it is unclear",
               "hard to tell", "difficult to tell", "hard to determine", "difficult to determine",
               "suggesting", "suggests"]
_HEDGE = r"(?i)(?-u:\b)(?:" + "|".join(w.replace(" ", r"\s+") for w in HEDGE_WORDS) + r")(?-u:\b)"
#: A cheaper superset of :data:`_HEDGE` (every phrase without its first letter).
_HEDGE_SCREEN = (r"(?:ppears?|eems?) to|ossibly|erhaps|robably|ikely|(?:ight|ay|ould) be|resumably|unclear"
                 r"|(?:ard|ifficult) to|uggest")
#: Markdown needs one of these characters, or a bullet or number at the start.
_MD_SCREEN = r"[*_#\n]|^[ \t]*(?:[-*•+]|[0-9]{1,2}[.)])[ \t]"


def _where(text: pl.Series, screen: pl.Series, expr: pl.Expr, dtype: pl.DataType, other) -> pl.Series:
    """``expr`` (over ``pl.col("t")``) on the screened rows; ``other`` on the rest."""
    idx = screen.fill_null(False).arg_true()
    out = pl.Series("s", [other], dtype).extend_constant(other, len(text) - 1) if len(text) else pl.Series("s", [], dtype)
    if len(idx):
        done = text.gather(idx).to_frame("t").select(expr.cast(dtype)).to_series()
        out = out.scatter(idx, done)
    return out


def signals(clean: pl.Series) -> list[pl.Series]:
    """The three signal columns of a ``caption_clean`` column (null captions: null).

    Each runs its regular expression only on the rows a cheaper test selects: rows without
    terminal punctuation, rows with a hedge fragment, rows with a markdown character."""
    text = clean.cast(pl.String).fill_null("")
    t = pl.col("t")
    frame = text.to_frame("t")
    open_end = frame.select(~t.str.contains(_END) & (t.str.len_bytes() > 0)).to_series()
    truncated = _where(text, open_end, t.str.contains(_SENTENCE) | t.str.contains(_DANGLING), pl.Boolean, False)
    hedges = _where(text, text.str.contains(_HEDGE_SCREEN), t.str.count_matches(_HEDGE), pl.UInt16, 0)
    markdown = _where(text, text.str.contains(_MD_SCREEN), t.str.contains(MARKDOWN), pl.Boolean, False)
    null = clean.is_null()
    empty = null | (text.str.len_bytes() == 0)
    return pl.DataFrame({"e": empty, "n": null, "a": truncated, "h": hedges, "m": markdown}).select(
        pl.when("e").then(None).otherwise("a").alias(TRUNCATED),
        pl.when("n").then(None).otherwise("h").alias(HEDGES),
        pl.when("n").then(None).otherwise("m").alias(MARKDOWN_LEFT),
    ).get_columns()
