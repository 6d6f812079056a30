from __future__ import annotations

import numpy as np
import polars as pl

from curate.clean.boilerplate import STOCK
from curate.scoring.filters.base import TEXT, Filter

# (kind, weight, pattern). Patterns are case-insensitive regular expressions (Rust regex
# syntax) tested on the normalised caption. Weight 1.0: the caption is not a description
# (a file name, a refusal); 0.5: a sign of commercial or scraped alt-text that a good
# caption can still carry once (a price, a size). The kinds follow the boilerplate lists of
# LAION/DataComp-style alt-text cleaning and of C4/Gopher ("lorem ipsum", "click here").
PATTERNS: list[tuple[str, float, str | None]] = [
    ("refusal", 1.0,
     r"(?-u:\b)i'?m (?:sorry|afraid)(?-u:\b).{0,40}(?-u:\b)(?:can(?:no|')?t|unable|not able)(?-u:\b)"
     r"|(?-u:\b)i (?:can(?:no|')?t|am unable to|am not able to) (?:help|assist|provide|describe|identify|see|view|determine|tell)"
     r"|(?-u:\b)as an ai(?-u:\b)|(?-u:\b)as a(?:n ai)? language model(?-u:\b)|(?-u:\b)unable to (?:view|see|access|process) (?:the |this )?(?:image|picture|photo)"),
    ("preamble", 1.0,
     r"^(?:sure|certainly|of course|absolutely)(?-u:\b)[!,.]?\s.{0,60}(?-u:\b)(?:description|caption)(?-u:\b)"
     r"|^here(?:'s| is) (?:a |an |the )?(?:detailed |brief |short )?(?:description|caption)(?-u:\b)"),
    ("image_may_contain", 1.0,
     r"(?-u:\b)image may contain(?-u:\b)|(?-u:\b)no (?:photo|image) description available(?-u:\b)|(?-u:\b)image description\s*:"),
    ("placeholder", 1.0,
     r"^\W*(?:image|images|photo|photos|picture|pic|img|untitled|null|none|n/?a|undefined|placeholder"
     r"|default|thumbnail|thumb|logo|banner|icon|alt|alt text|caption|no caption|test|lorem ipsum.*|[0-9]+)\W*$"),
    ("filename", 1.0,
     r"(?-u:\b)[a-z0-9_-]+\.(?:jpe?g|png|gif|webp|bmp|tiff?|heic|svg)(?-u:\b)"
     r"|^(?:img|dsc|dscn|dcim|pxl|mvimg|screenshot|photo|image)[_ -]?[0-9]{2,}"
     # a slug: one "word" of letters joined by at least two - or _ (file or URL names)
     r"|^[\p{L}[0-9]]+(?:[_-][\p{L}[0-9]]+){2,}$"),
    ("url", 1.0, r"(?-u:\b)https?://|(?-u:\b)www\.[a-z0-9_-]+\.[a-z]+|(?-u:\b)[a-z0-9_-]+\.(?:com|net|org|io|co\.uk|html?|php|aspx?)(?-u:\b)"),
    ("html", 1.0, r"</?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>"),
    ("stock", 1.0, STOCK),  # the one stock-photo vocabulary, shared with clean and dedup
    ("call_to_action", 1.0,
     r"(?-u:\b)(?:click here|read more|buy now|shop now|order now|free shipping|add to (?:cart|basket)"
     r"|download (?:now|free|here)|learn more|subscribe|sign up|best price|on sale|limited offer)(?-u:\b)"),
    # keyword lists: three or more hashtags here; ``_keyword_list`` adds "a | b | c" and a
    # whole caption of six or more short comma-separated items without function words
    ("seo", 1.0, r"(?:#[^\s#]+\s*){3,}"),
    # a caption made mostly of numbers and codes ("1920x1080 wallpaper 2707"): see ``_mostly_codes``
    ("codes", 1.0, None),
    ("html_entity", 0.5, r"&(?:amp|nbsp|quot|lt|gt|#[0-9]+|#x[0-9a-f]+);"),
    ("commerce", 0.5,
     r"(?-u:\b)for sale(?-u:\b)|(?-u:\b)clearance(?-u:\b)|(?-u:\b)free delivery(?-u:\b)|(?-u:\b)in stock(?-u:\b)|(?-u:\b)sold out(?-u:\b)|(?-u:\b)wholesale(?-u:\b)"
     r"|(?-u:\b)[0-9]{1,2}\s?% off(?-u:\b)|(?-u:\b)discount(?-u:\b)"),
    ("price", 0.5, r"[$€£¥₹]\s?[0-9]|(?-u:\b)[0-9]+(?:[.,][0-9]{2})?\s?(?:usd|eur|gbp|dollars|euros)(?-u:\b)"),
    ("size", 0.5, r"(?-u:\b)[0-9]{2,5}\s?[x×]\s?[0-9]{2,5}(?-u:\b)|(?-u:\b)[0-9]+(?:\.[0-9]+)?\s?(?:px|pixels|megapixels|kb|mb|dpi)(?-u:\b)"),
    ("encoding", 0.5, r"\x{FFFD}|[Ãã][\x{80}-\x{BF}©¤¶¼½]|â€[™œ\x{9D}“”˜]"),
]
#: Kinds that a long description can legitimately contain as text seen in the image (a
#: website on a shirt, a price on a poster): their weight halves in captions of
#: ``LONG_WORDS`` words or more, and text inside quotation marks is never tested for them.
EMBEDDED = ("url", "price", "size", "commerce", "html_entity", "stock")
LONG_WORDS = 40
QUOTED = r"\"[^\"]{0,200}\"|“[^”]{0,200}”|«[^»]{0,200}»"
#: A sentence has articles, prepositions or verbs; a keyword list has none.
FUNCTION_WORDS = r"(?-u:\b)(?:a|an|the|of|with|in|on|at|is|are|and|und|der|die|das|le|la|les|el|los|de)(?-u:\b)"

KINDS = tuple(k for k, _, _ in PATTERNS)


#: Literal strings of which every junk kind needs at least one (or a digit, no space at all,
#: 24 bytes or less, many commas, or a preamble's first word). One Aho-Corasick pass over
#: these screens the batch; the regular expressions then run on the screened rows only.
SCREEN = [
    "sorry", "afraid", "can't", "can’t", "cant ", "cannot", "unable", "not able", "as an ai", "language model",
    "may contain", "description available", "image description",
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".heic", ".svg",
    "http", "www.", ".com", ".net", ".org", ".io", ".co.uk", ".htm", ".php", ".asp", "<", "&",
    "stock", "royalty", "getty", "alamy", "dreamstime", "depositphotos", "123rf", "pond5", "vector ",
    "стоков", "ストック", "stok ", "videozáznam", "click here", "read more", "buy now", "shop now", "order now", "free shipping",
    "add to ", "download", "learn more", "subscribe", "sign up", "best price", "on sale", "limited offer",
    "#", "|", "for sale", "clearance", "free delivery", "in stock", "sold out", "wholesale", "discount",
    "$", "€", "£", "¥", "₹", "\ufffd", "ã", "â€", "lorem ipsum",
]
PLACEHOLDER_BYTES = 24  # the longest placeholder word list entry ("no photo description") is shorter
PREAMBLE_START = r"^(?:sure|certainly|of course|absolutely|here)"


def screen(t: pl.Expr) -> pl.Expr:
    return (
        t.str.contains_any(SCREEN)
        | t.str.contains(r"[0-9]")
        | ~t.str.contains(" ", literal=True)
        | (t.str.len_bytes() <= PLACEHOLDER_BYTES)
        | t.str.contains(PREAMBLE_START)
        | (t.str.count_matches(",", literal=True) >= 5)
    )


def _mostly_codes(frame: pl.DataFrame) -> pl.Series:
    """At least two words with digits, and they make up half of the words or more (``t``
    the text, ``words`` its words); words with digits are counted only where there is one."""
    t = pl.col("t")
    digits = frame.select(t.str.contains(r"[0-9]")).to_series().arg_true()
    coded = pl.Series(np.zeros(frame.height, dtype=np.uint32)).scatter(
        digits, frame["t"].gather(digits).str.count_matches(r"\S*[0-9]\S*"))
    return (coded >= 2) & (coded * 2 >= frame["words"])


def _keyword_list(frame: pl.DataFrame) -> pl.Series:
    """"a | b | c" (two or more pipes), or six or more comma-separated items of at most 30
    characters each with no article, preposition or "and" (a sentence has them); looked for
    only in text with a comma or a pipe."""
    t = pl.col("t")
    rows = frame.select(t.str.contains_any([",", "|"])).to_series().arg_true()
    pipes = t.str.count_matches("|", literal=True) >= 2
    commas = (t.str.count_matches(",", literal=True) >= 5) & ~t.str.contains(r"[^,]{31}")
    found = frame[rows].select(pipes | (commas & ~t.str.contains(FUNCTION_WORDS))).to_series()
    return pl.Series(np.zeros(frame.height, dtype=bool)).scatter(rows, found)


class Junk(Filter):
    """Alt-text boilerplate and captioning artefacts.

    Rule: ``score__junk`` is the sum of the weights of the junk kinds found (capped at 1);
    ``junk_kind`` names the first kind found in the order of ``PATTERNS`` (null when none).
    Weight 1.0 marks text that is not a description at all (file names and slugs, URLs,
    HTML tags, "stock photo", "click here", "image may contain", placeholders, SEO keyword
    lists, captions made mostly of numbers and codes, model refusals and preambles); 0.5 marks commercial detail (prices, "for sale",
    pixel sizes), HTML entities and broken encoding, so one of those alone passes the
    default ``max = 0.5``. Long descriptions (40+ words) often quote text seen in the image
    (a website on a shirt, a price on a poster): there the weight of those kinds halves,
    and text in quotation marks is not tested for them. A comma list counts as SEO only
    when it has no article, preposition or "and" (a sentence has them).
    """

    name = "junk"
    version = 3
    params = {}
    default_min = None
    default_max = 0.5
    label = "junk_kind"

    def label_error(self, values: list[str]) -> str | None:
        unknown = [v for v in values if v not in KINDS]
        return f"unknown junk kinds {unknown}; valid kinds: {', '.join(KINDS)}" if unknown else None

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        frame = batch.select(pl.col(TEXT).str.to_lowercase().alias("t")).with_row_index("i")
        found = evaluate(frame.filter(screen(pl.col("t"))), column)
        return frame.select("i").join(found, on="i", how="left", maintain_order="left").select(
            pl.col(column).fill_null(0.0), "junk_kind"
        )


def evaluate(cand: pl.DataFrame, column: str) -> pl.DataFrame:
    """Every pattern on every row of ``cand`` (columns ``i`` and lower-cased text ``t``):
    each pattern once (a column of hits), then the weights and the first kind from them."""
    t = pl.col("t")
    frame = cand.with_columns(unquoted=t.str.replace_all(QUOTED, " "), words=t.str.count_matches(r"\S+"))
    hits = frame.select(
        (pl.col("unquoted" if kind in EMBEDDED else "t").str.contains(f"(?s){pat}").alias(kind)
         for kind, _, pat in PATTERNS if pat is not None)
    ).with_columns(codes=_mostly_codes(frame))
    hits = hits.with_columns(pl.col("seo") | _keyword_list(frame))
    long = pl.Series(frame["words"] >= LONG_WORDS)
    weights = [pl.when(long & pl.lit(kind in EMBEDDED)).then(w / 2).otherwise(w) * pl.col(kind).cast(pl.Float64)
               for kind, w, _ in PATTERNS]
    kind = pl.lit(None, pl.String)
    for k, _, _ in reversed(PATTERNS):
        kind = pl.when(pl.col(k)).then(pl.lit(k)).otherwise(kind)
    return hits.select(
        cand["i"], pl.min_horizontal(pl.sum_horizontal(weights), pl.lit(1.0)).alias(column), kind.alias("junk_kind"),
    )
