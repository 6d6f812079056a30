"""Web alt-text affixes around a good description: ``affixes``.

What a site or a platform adds to a caption that says nothing about the picture: Facebook's
"Image may contain:", a file extension, a photo credit, an opener that only says it is a
picture ("Picture of", Reddit's "itap of", "[OC]"). The description inside stays.
"""
from __future__ import annotations

import polars as pl

from curate.clean.base import Transform, capitalise_like, expr_on, keep_if_emptied, on_rows

_EXT = r"(?:jpe?g|png|gif|webp|bmp|tiff?|heic|svg|eps)"
#: Openers (case-insensitive, at the start) that say only that this is a picture.
OPENERS = (
    r"^\s*(?:image may contain|may contain)\s*:\s*"
    r"|^\s*(?:no )?(?:photo|image) description(?: available)?\s*[:.]?\s*"
    r"|^\s*i\s?t\s?a\s?p\s+(?:of\s+)?"  # Reddit's "I took a picture of"
    r"|^\s*(?:\[oc\]|\(oc\)|\{oc\})\s*"
    r"|^\s*english\s*:\s*"
    r"|^\s*(?:image for|property image\s*#?)\s+"
    r"|^\s*(?:a |an |the )?(?:picture|photo|image|photograph|pic|foto)\s*(?:of\s+|[-:–|]\s+)(?P<keep>\S+\s+\S)"
)
#: Tags and credits at the end: "[OC]", a photo credit ("Photo by Jane Doe", "(AP Photo/Jane
#: Doe)", "© 2014 Jane Doe", "Credit: Reuters", "Image courtesy of ..."), a file type word.
CLOSERS = (
    r"\s*(?:\[oc\]|\(oc\)|\{oc\})\s*$"
    r"|\s*[(\[]\s*(?:ap|afp|reuters|getty images|epa)?\s*(?:photo|foto|image|picture)s?\s*(?:/|:|by)[^()\[\]]{1,60}[)\]]\s*[.]?\s*$"
    r"|[\s,;|–—-]*(?:photo(?:graph)?s?|image|picture|foto)\s*(?:credit\s*)?(?:by|:|/|©)\s*[\p{L}][\p{L}.'’ -]{1,40}$"
    r"|[\s,;|–—-]*(?:photo |image )?(?:credit|courtesy(?: of)?|source)\s*:?\s+[\p{L}][\p{L}.'’ /&-]{1,40}$"
    r"|\s*(?:©|\(c\))\s*(?:[0-9]{4}\s*)?[\p{L}][\p{L}.'’ -]{1,40}$"
    rf"|[\s,;|–—-]+{_EXT}$"
    r"|\s*[-–—#|]+\s*[0-9]{5,}$"  # a trailing picture id: "cogs in the head - 14600135"
    r"|\s*\(view [0-9]+ of [0-9]+\)$|\s+royalty\s*-\s*free$|\s*\|?\s*price\s*:.*$"
    r"|\s*\[[^\]]*(?:sale|clearance)[^\]]*\]$"
    r"|\s+(?:by\s+[^,]{1,40}\s+)?on flickr\.?$"
    r"|\s+(?:on|from|at|via)\s+[a-z0-9-]+\.(?:com|net|org|co\.uk)\.?$"
)
#: A file extension after a name ("sunset_beach.jpg" -> "sunset_beach").
EXTENSION = rf"\.{_EXT}\b"
_SCREEN = (r"(?i)[0-9]{5}|view [0-9]|royalty|price|sale|clearance|flickr|\.com|\.net|\.org|\.co\.uk|image for|may contain|description|^\s*i\s?t\s?a\s?p|oc[\]})]|^\s*english|^\s*(?:a |an |the )?(?:picture|photo|image"
           rf"|photograph|pic|foto)\b|photo|image|picture|foto|credit|courtesy|source|©|\(c\)|{_EXT}\b")


class Affixes(Transform):
    """Platform openers, photo credits and file names around a description are removed.

    Rule: on the rows :data:`_SCREEN` selects, an opener of :data:`OPENERS` at the start
    ("Image may contain:", "Picture of", "itap of", "[OC]", "English:") and a closer of
    :data:`CLOSERS` at the end (a photo credit, "[OC]", a trailing file type) are removed,
    and file extensions are cut from names; a caption that was a file name ("red_barn.jpg")
    gets spaces for its underscores and hyphens. Never when no letter would be left; a
    capital first letter is kept.

        "Image may contain: a dog on a beach"                  -> "A dog on a beach"
        "itap of a frozen lake at dawn"                        -> "A frozen lake at dawn"
        "Picture of 2006 Dodge Charger SE RWD, exterior"       -> "2006 Dodge Charger SE RWD, exterior"
        "Fishing boats in the harbour (AP Photo/Jane Doe)"     -> "Fishing boats in the harbour"
        "Sunset over the lake. Photo by John Smith"            -> "Sunset over the lake."
        "old_red_barn_in_snow.jpg"                             -> "old red barn in snow"
        "Cogs working in the head - 14600135"                  -> "Cogs working in the head"
        "A photo booth at a wedding"                           -> unchanged
    """

    name = "affixes"
    version = 1

    def apply(self, text: pl.Series) -> pl.Series:
        return on_rows(text, text.str.contains(_SCREEN), self._fix)

    @staticmethod
    def _fix(text: pl.Series) -> pl.Series:
        t = pl.col("t")
        slug = t.str.contains(rf"(?i)^[\p{{L}}0-9]+(?:[_-][\p{{L}}0-9]+)+\.{_EXT}$")
        out = expr_on(text, (
            pl.when(slug).then(t.str.replace(rf"(?i){EXTENSION}$", "").str.replace_all(r"[_-]+", " ")).otherwise(t)
            .str.replace(f"(?i){OPENERS}", "${keep}")
            .str.replace(f"(?i){CLOSERS}", "")
            .str.replace_all(f"(?i){EXTENSION}", "")
            .str.strip_chars(" ,;|–—-")
        ))
        return keep_if_emptied(text, capitalise_like(text, out))
