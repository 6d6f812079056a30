"""Stock-photo boilerplate: the one vocabulary, and the transform that removes it.

The ``junk`` filter's ``stock`` kind, dedup's normaliser (:mod:`curate.dedup.text`) and the
``boilerplate`` transform all use the lists below, so a word added here is recognised by
all three. The clean stage comes before scoring and dedup, so they import from it.
"""
from __future__ import annotations

import polars as pl

from curate.clean.base import Transform, capitalise_like, expr_on, keep_if_emptied, on_rows

#: Stock-photo marks (lower-case text; ASCII word boundaries for speed): "stock photo",
#: "royalty free", the agencies, "vector illustration", translations.
STOCK = (
    r"(?-u:\b)stock (?:photo|photograph|image|picture|illustration|vector|footage)s?(?-u:\b)|(?-u:\b)royalty[- ]free(?-u:\b)"
    r"|(?-u:\b)(?:shutterstock|getty ?images|alamy|dreamstime|depositphotos|123rf|istock(?:photo)?|adobe stock|pond5)(?-u:\b)"
    r"|(?-u:\b)vector (?:illustration|image|graphic)(?-u:\b)|(?-u:\b)stockfoto(?-u:\b)|(?-u:\b)(?:photo|foto|fotografía) de stock(?-u:\b)"
    r"|стоковая|стоковое|ストックフォト|(?-u:\b)stockvectorbeeld|(?-u:\b)stok (?:fotoğraf|görsel|vektör|video)|videozáznamy"
    r"|zdjęci[ea] stockowe|(?-u:\b)stockové (?:fotografie|video)"
)
#: Words that make up a boilerplate affix around a stock mark ("free", "editorial",
#: "photography", "of", ids like "8915275"), without word boundaries.
ATOM_WORDS = (
    r"stock|royalty|free|editorial|photos?|photograph(?:s|y)?|images?|pictures?|pics?"
    r"|illustrations?|vectors?|footage|videos?|fotografie|foto|clip ?art|art|graphics?|eps|jpe?g|png"
    r"|hd|4k|of|by|from|via|on|and|shutterstock|getty ?images|alamy|dreamstime|depositphotos|123rf"
    r"|istock(?:photo)?|adobe|pond5|\d{4,}"
    r"|stockfoto|stockvectorbeeld|stok|fotoğraf(?:ı|lar)?|görsel|vektör|dostupné|videozáznamy|zdjęci[ea]|stockowe|stockové"
)
#: One affix word, as dedup's normalised text sees it (punctuation already gone).
ATOM = rf"(?:{ATOM_WORDS})\b"
#: An affix counts as boilerplate when it holds one of these marks.
MARK = rf"{STOCK}|\bstock\b"

_SEP = r"[\s\p{P}\p{S}]"
_PREFIX = rf"(?i)^(?:{_SEP}*(?:{ATOM_WORDS})\b)+{_SEP}*"
_SUFFIX = rf"(?i)(?:{_SEP}+(?:{ATOM_WORDS})\b)+{_SEP}*$"


def _is_boilerplate(affix: pl.Expr) -> pl.Expr:
    """The rule dedup applies: a stock mark, or the word "stock" with another affix word
    (so "chicken stock" keeps its "stock")."""
    low = affix.str.to_lowercase()
    words = low.str.count_matches(rf"\b(?:{ATOM_WORDS})\b")
    return low.str.contains(MARK) & (low.str.contains(STOCK) | (words >= 2))


class Boilerplate(Transform):
    """Stock-photo affixes at either end of a caption are removed.

    Rule: a run of affix words (:data:`ATOM_WORDS`: "stock", "photo", "royalty", "free",
    agency names, ids of 4+ digits) with their separators, at the start or the end, is
    removed when it holds a stock mark (:data:`STOCK`) or the word "stock" and another
    affix word; never when no letter would be left. A capital first letter is kept.

        "Stock Photo - Happy family on the beach"            -> "Happy family on the beach"
        "Old barn in autumn - royalty free stock photo"     -> "Old barn in autumn"
        "Red apple on a table | Shutterstock #1234567"      -> "Red apple on a table"
        "Homemade chicken stock"                            -> unchanged
    """

    name = "boilerplate"
    version = 2

    def apply(self, text: pl.Series) -> pl.Series:
        return on_rows(text, expr_on(text, pl.col("t").str.to_lowercase().str.contains(MARK)), self._fix)

    def _fix(self, text: pl.Series) -> pl.Series:
        t = pl.col("t")
        pre = t.str.extract(f"({_PREFIX})", 1).fill_null("")
        out = expr_on(text, pl.when(_is_boilerplate(pre)).then(t.str.slice(pre.str.len_chars())).otherwise(t))
        suf = t.str.extract(f"({_SUFFIX})", 1).fill_null("")
        out = expr_on(out, pl.when(_is_boilerplate(suf))
                      .then(t.str.slice(0, t.str.len_chars() - suf.str.len_chars())).otherwise(t))
        out = expr_on(out, t.str.strip_chars())
        return keep_if_emptied(text, capitalise_like(text, out))
