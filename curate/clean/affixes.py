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
    # a shop's page text: "View Image 1 of", "Click to view larger image of", "Display product reviews for"
    r"|^\s*(?:click (?:here )?to (?:view|enlarge|zoom)|view)\s+(?:(?:larger|large|full[- ]size|bigger)\s+)?"
    r"(?:image|photo|picture)s?(?:\s+[0-9]+(?:\s+of\s+[0-9]+)?)?\s+(?:of|for)\s+"
    r"|^\s*(?:display|read|write|see)\s+(?:all\s+)?(?:product\s+|customer\s+)?reviews?\s+(?:for|of|on)\s+"
    r"|^\s*[0-9a-f]{10,}\s+"  # a leading hash or id: "a3a9ab5b7645 Baby Pink Wedding Shoes"
)
#: A site's domain: "scratchmadejournal.com", "knowlton.osu.edu".
_DOMAIN = r"(?:[A-Za-z0-9-]+\.)+(?i:com|net|org|edu|gov|info|co\.uk|com\.au)"
#: One dimension of a size: "24", "27.75", "2400mm", "5 cm".
_SIZE = r"[0-9]+(?:[.,][0-9]+)?\s*(?i:mm|cm|in|inch|inches|ft|m|\"|'')?"
#: A name in a credit: up to four capitalised words ("Jane Doe", "J. R. Smith").
_NAME = r"\p{Lu}[\p{L}.'’-]*(?:\s+(?:de |van |von |da )?\p{Lu}[\p{L}.'’-]*){0,3}"
#: Tags and credits at the end: "[OC]", a photo credit ("Photo by Jane Doe", "(AP Photo/Jane
#: Doe)", "© 2014 Jane Doe", "Credit: Reuters", "Image courtesy of ..."), a file type word, a
#: trailing picture id, "(View 6 of 15)", a price, a sale tag, "on Flickr", a site's domain.
#: Key words are matched in any case, names only when capitalised.
CLOSERS = (
    r"\s*(?i:\[oc\]|\(oc\)|\{oc\})\s*$"
    r"|\s*[(\[]\s*(?i:ap|afp|reuters|getty images|epa)?\s*(?i:photo(?:graph)?|foto|image|picture)s?\s*(?:/|:|(?i:by))[^()\[\]]{1,60}[)\]]\s*\.?\s*$"
    rf"|[\s,;|–—-]*(?i:photo(?:graph)?s?|image|picture|foto)\s*(?i:credit\s*)?(?:(?i:by)|:|/|©)\s*{_NAME}\.?$"
    rf"|[\s,;|–—-]*(?i:photo |image )?(?i:credit|courtesy(?: of)?|source)\s*:?\s+{_NAME}\.?$"
    rf"|\s*(?:©|\((?i:c)\))\s*(?:[0-9]{{4}}\s*)?{_NAME}\.?$"
    rf"|[\s,;|–—-]+(?i:{_EXT})$"
    r"|\s*[-–—#|]+\s*[0-9]{5,}$"  # a trailing picture id: "cogs in the head - 14600135"
    r"|\s*\((?i:view) [0-9]+ (?i:of) [0-9]+\)$|\s+(?i:royalty)\s*-\s*(?i:free)$|\s*\|?\s*(?i:price)\s*:.*$"
    r"|\s*\[[^\]]*(?i:sale|clearance)[^\]]*\]$"
    r"|\s+(?:(?i:by)\s+[^,]{1,40}\s+)?(?i:on flickr)\.?$"
    rf"|\s+(?:(?i:image|photo|picture)s?\s+)?(?i:on|from|at|via)\s+{_DOMAIN}\.?$|\s*[,;|–—-]+\s*{_DOMAIN}\.?$"
    r"|[\s(,;|–—-]+(?i:image|view|photo|picture|pic)\s*[0-9]{1,2}\)?$"  # "view 4", "(Image1)"
    r"|\s*\(\s*[0-9]+\s*[- ]?\s*(?i:pics|photos|pictures|images|pcs|pieces)\s*\)$"  # "(30 pics)", "(50-Pcs)"
    rf"|\s*[,;|–—-]?\s*\(?{_SIZE}\s*[x×]\s*{_SIZE}(?:\s*[x×]\s*{_SIZE})?\)?$"  # "24x32", "(2400mm x 1200mm)"
    r"|\s*(?:[,;|–—-]|\s(?i:rrp|price|only|now|was|sale)\s*:?)\s*[£$€¥]\s?[0-9][0-9.,]*$"  # "RRP £180", "- $68"
    r"|\s+(?:[,;|–—-]\s*)?[A-Z]{2,}[0-9A-Z]*[-./]?[0-9]{3,}[A-Z0-9./-]*$"  # a product code: "DF-1297", "PU-076002B"
    r"|\s+[\[({]+$"  # a stray opening bracket
)
#: A file extension after a name ("sunset_beach.jpg" -> "sunset_beach").
EXTENSION = rf"\.{_EXT}\b"
#: Literal strings that a caption with an opener has in its first 40 characters, one with a
#: closer in its last 80 (or five digits at its end), and one with a file extension anywhere
#: (one Aho-Corasick pass each).
HEAD_SCREEN = ["may contain", "description", "itap", "i tap", "oc]", "oc)", "oc}", "english", "image", "picture",
               "photo", "pic", "foto", "review"]
TAIL_SCREEN = ["oc]", "oc)", "oc}", "photo", "foto", "image", "picture", "credit", "courtesy", "source", "©", "(c)",
               "jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "heic", "svg", "eps", "view", "royalty", "price", "sale", "clearance", "flickr", ".com", ".net", ".org",
               ".co.uk", ".edu", ".gov", ".info", "pcs", "pieces", "£", "$", "€", "¥"]
EXT_SCREEN = [f".{e}" for e in ("jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "heic", "svg", "eps")]
#: Closers are searched in the last this many characters only (a regex anchored at the end
#: would otherwise try every position of a long caption).
TAIL_CHARS = 80


class Affixes(Transform):
    """Platform openers, photo credits and file names around a description are removed.

    Rule: on the rows :data:`_SCREEN` selects, an opener of :data:`OPENERS` at the start
    ("Image may contain:", "Picture of", "itap of", "[OC]", "English:") and a closer of
    :data:`CLOSERS` at the end (a photo credit, "[OC]", a trailing file type) are removed,
    and file extensions are cut from the names in a caption of several words (a caption that
    is only a file name, "IMG_4821.jpg", stays whole: the ``junk`` filter drops it). Shop page
    text is removed too: an opener such as "View Image 1 of" or "Display product reviews for",
    a leading hash or id of 10+ hex digits, and at the end a site's domain after a separator,
    "view 4", "(30 pics)", a size ("24x32"), a price after a separator or "RRP", a product
    code of capitals and 3+ digits ("DF-1297"). A caption quoted as a CSV field loses its
    quotes, and a file name's words joined by underscores (or by hyphens, with no space) are
    words again. Never when no letter would be left; a capital first letter is kept.

        "Image may contain: a dog on a beach"                  -> "A dog on a beach"
        "itap of a frozen lake at dawn"                        -> "A frozen lake at dawn"
        "Picture of 2006 Dodge Charger SE RWD, exterior"       -> "2006 Dodge Charger SE RWD, exterior"
        "Fishing boats in the harbour (AP Photo/Jane Doe)"     -> "Fishing boats in the harbour"
        "Sunset over the lake. Photo by John Smith"            -> "Sunset over the lake."
        "Styling machine.png"                                  -> "Styling machine"
        "IMG_4821.jpg"                                         -> unchanged
        "Cogs working in the head - 14600135"                  -> "Cogs working in the head"
        "A photo booth at a wedding"                           -> unchanged
    """

    name = "affixes"
    version = 2

    def apply(self, text: pl.Series) -> pl.Series:
        ci = {"ascii_case_insensitive": True}
        screen = (text.str.head(40).str.contains_any(HEAD_SCREEN, **ci)
                  | text.str.tail(TAIL_CHARS).str.contains_any(TAIL_SCREEN, **ci)
                  | text.str.tail(4).str.contains(r"[0-9\[({]")
                  | text.str.head(11).str.contains(r"^\s*[0-9a-fA-F]{10}")
                  | text.str.contains_any(EXT_SCREEN + ['""', "_"], **ci)
                  | (text.str.contains("-", literal=True) & ~text.str.contains(" ", literal=True)))
        return on_rows(text, screen, self._fix)

    @staticmethod
    def _fix(text: pl.Series) -> pl.Series:
        t = pl.col("t")
        # a caption written out as a CSV field ("14K GOLD ""X"" RING" in quotes), a file name's
        # words joined by underscores, or by hyphens without a space: words again
        csv = t.str.starts_with('"') & t.str.ends_with('"') & t.str.contains('""', literal=True)
        out = expr_on(text, pl.when(csv).then(t.str.slice(1, t.str.len_chars() - 2).str.replace_all('""', '"', literal=True))
                      .otherwise(t))
        slug = (t.str.count_matches(r"[\p{L}\p{N}]_+[\p{L}\p{N}]") >= 2) | (
            ~t.str.contains(" ", literal=True) & (t.str.count_matches(r"[\p{L}\p{N}]-[\p{L}\p{N}]") >= 3))
        out = expr_on(out, pl.when(slug).then(t.str.replace_all(r"[_-]+", " ").str.strip_chars()).otherwise(t))
        out = expr_on(out, t.str.replace(f"(?i){OPENERS}", "${keep}"))
        # a closer is cut from the tail: the caption loses what its tail lost. Every closer
        # ends at the end, so the one found is the one that starts first: the shortest head
        # that a closer follows. Searched from the start (a search for CLOSERS itself runs
        # the name classes backwards from the end, an automaton 20 times slower to build)
        tail = t.str.tail(TAIL_CHARS)
        head = tail.str.extract(rf"^((?s:.*?))(?:{CLOSERS})", 1)
        cut = (tail.str.len_chars() - head.str.len_chars()).fill_null(0)
        out = expr_on(out, t.str.head(t.str.len_chars() - cut))
        # an extension is cut from a caption with words ("Styling machine.png"); a bare file
        # name ("IMG_4821.jpg") stays whole for the junk filter to drop
        out = expr_on(out, pl.when(t.str.contains_any(EXT_SCREEN, ascii_case_insensitive=True) & t.str.contains(" "))
                      .then(t.str.replace_all(f"(?i){EXTENSION}", "")).otherwise(t).str.strip_chars(" ,;|–—-"))
        return keep_if_emptied(text, capitalise_like(text, out))
