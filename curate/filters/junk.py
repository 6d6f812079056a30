from __future__ import annotations

import polars as pl

from .base import TEXT, Filter

# (kind, weight, pattern). Patterns are case-insensitive regular expressions (Rust regex
# syntax) tested on the normalised caption. Weight 1.0: the caption is not a description
# (a file name, a refusal); 0.5: a sign of commercial or scraped alt-text that a good
# caption can still carry once (a price, a size). The kinds follow the boilerplate lists of
# LAION/DataComp-style alt-text cleaning and of C4/Gopher ("lorem ipsum", "click here").
PATTERNS: list[tuple[str, float, str]] = [
    ("refusal", 1.0,
     r"\bi'?m (?:sorry|afraid)\b.{0,40}\b(?:can(?:no|')?t|unable|not able)\b"
     r"|\bi (?:can(?:no|')?t|am unable to|am not able to) (?:help|assist|provide|describe|identify|see|view|determine|tell)"
     r"|\bas an ai\b|\bas a(?:n ai)? language model\b|\bunable to (?:view|see|access|process) (?:the |this )?(?:image|picture|photo)"),
    ("preamble", 1.0,
     r"^(?:sure|certainly|of course|absolutely)\b[!,.]?\s.{0,60}\b(?:description|caption)\b"
     r"|^here(?:'s| is) (?:a |an |the )?(?:detailed |brief |short )?(?:description|caption)\b"),
    ("image_may_contain", 1.0,
     r"\bimage may contain\b|\bno (?:photo|image) description available\b|\bimage description\s*:"),
    ("placeholder", 1.0,
     r"^\W*(?:image|images|photo|photos|picture|pic|img|untitled|null|none|n/?a|undefined|placeholder"
     r"|default|thumbnail|thumb|logo|banner|icon|alt|alt text|caption|no caption|test|lorem ipsum.*|\d+)\W*$"),
    ("filename", 1.0,
     r"\b[\w-]+\.(?:jpe?g|png|gif|webp|bmp|tiff?|heic|svg)\b"
     r"|^(?:img|dsc|dscn|dcim|pxl|mvimg|screenshot|photo|image)[_ -]?\d{2,}"
     # a slug: one "word" of letters joined by at least two - or _ (file or URL names)
     r"|^[\p{L}\d]+(?:[_-][\p{L}\d]+){2,}$"),
    ("url", 1.0, r"\bhttps?://|\bwww\.[\w-]+\.\w+|\b[\w-]+\.(?:com|net|org|io|co\.uk|html?|php|aspx?)\b"),
    ("html", 1.0, r"</?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>"),
    ("stock", 1.0,
     r"\bstock (?:photo|photograph|image|picture|illustration|vector|footage)s?\b|\broyalty[- ]free\b"
     r"|\b(?:shutterstock|getty ?images|alamy|dreamstime|depositphotos|123rf|istock(?:photo)?|adobe stock|pond5)\b"
     r"|\bvector (?:illustration|image|graphic)\b|\bstockfoto\b|\b(?:photo|foto|fotografía) de stock\b"
     r"|стоковая|стоковое|ストックフォト"),
    ("call_to_action", 1.0,
     r"\b(?:click here|read more|buy now|shop now|order now|free shipping|add to (?:cart|basket)"
     r"|download (?:now|free|here)|learn more|subscribe|sign up|best price|on sale|limited offer)\b"),
    # keyword lists: "a | b | c", three or more hashtags, or a whole caption of six or more
    # short comma-separated items with no article or preposition (a sentence has them)
    ("seo", 1.0,
     r"(?:[^|]+\|){2,}|(?:#[\w]+\s*){3,}"
     r"|^(?:(?:[^,]{1,30}),\s*){5,}[^,]{0,30}$"),
    ("html_entity", 0.5, r"&(?:amp|nbsp|quot|lt|gt|#\d+|#x[0-9a-f]+);"),
    ("commerce", 0.5,
     r"\bfor sale\b|\bclearance\b|\bfree delivery\b|\bin stock\b|\bsold out\b|\bwholesale\b"
     r"|\b\d{1,2}\s?% off\b|\bdiscount\b"),
    ("price", 0.5, r"[$€£¥₹]\s?\d|\b\d+(?:[.,]\d{2})?\s?(?:usd|eur|gbp|dollars|euros)\b"),
    ("size", 0.5, r"\b\d{2,5}\s?[x×]\s?\d{2,5}\b|\b\d+(?:\.\d+)?\s?(?:px|pixels|megapixels|kb|mb|dpi)\b"),
    ("encoding", 0.5, r"\x{FFFD}|[Ãã][\x{80}-\x{BF}©¤¶¼½]|â€[™œ\x{9D}“”˜]"),
]
#: Kinds that a long description can legitimately contain as text seen in the image (a
#: website on a shirt, a price on a poster): their weight halves in captions of
#: ``LONG_WORDS`` words or more, and text inside quotation marks is never tested for them.
EMBEDDED = ("url", "price", "size", "commerce", "html_entity", "stock")
LONG_WORDS = 40
QUOTED = r"\"[^\"]{0,200}\"|“[^”]{0,200}”|«[^»]{0,200}»"
#: A sentence has articles, prepositions or verbs; a keyword list has none.
FUNCTION_WORDS = r"\b(?:a|an|the|of|with|in|on|at|is|are|and|und|der|die|das|le|la|les|el|los|de)\b"

KINDS = tuple(k for k, _, _ in PATTERNS)


class Junk(Filter):
    """Alt-text boilerplate and captioning artefacts.

    Rule: ``score__junk`` is the sum of the weights of the junk kinds found (capped at 1);
    ``junk_kind`` names the first kind found in the order of ``PATTERNS`` (null when none).
    Weight 1.0 marks text that is not a description at all (file names and slugs, URLs,
    HTML tags, "stock photo", "click here", "image may contain", placeholders, SEO keyword
    lists, model refusals and preambles); 0.5 marks commercial detail (prices, "for sale",
    pixel sizes), HTML entities and broken encoding, so one of those alone passes the
    default ``max = 0.5``. Long descriptions (40+ words) often quote text seen in the image
    (a website on a shirt, a price on a poster): there the weight of those kinds halves,
    and text in quotation marks is not tested for them. A comma list counts as SEO only
    when it has no article, preposition or "and" (a sentence has them).
    """

    name = "junk"
    version = 1
    params = {}
    default_min = None
    default_max = 0.5
    label = "junk_kind"

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        text = pl.col(TEXT).str.to_lowercase()
        unquoted = text.str.replace_all(QUOTED, " ")
        long = text.str.count_matches(r"\S+") >= LONG_WORDS
        hits, weights = [], []
        for kind, w, pat in PATTERNS:
            on = unquoted if kind in EMBEDDED else text
            hit = on.str.contains(f"(?s){pat}")
            if kind == "seo":
                hit = hit & (text.str.contains(r"\|") | ~text.str.contains(FUNCTION_WORDS))
            hits.append(hit)
            weights.append(pl.when(long & pl.lit(kind in EMBEDDED)).then(w / 2).otherwise(w) * hit.cast(pl.Float64))
        kind = pl.lit(None, pl.String)
        for h, (k, _, _) in reversed(list(zip(hits, PATTERNS))):
            kind = pl.when(h).then(pl.lit(k)).otherwise(kind)
        return batch.select(
            pl.min_horizontal(pl.sum_horizontal(weights), pl.lit(1.0)).alias(column),
            kind.alias("junk_kind"),
        )
