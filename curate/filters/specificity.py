from __future__ import annotations

from functools import lru_cache

import polars as pl

from .base import TEXT, Filter

#: Word classes that make a caption concrete. Small closed lists; each word earns a bonus on
#: top of its rarity. (Colour, material, size and count vocabulary after the attribute
#: categories of Visual Genome; spatial relations after its relationship predicates.)
COLOURS = """red orange yellow green blue purple pink brown black white gray grey silver gold golden
beige tan maroon navy teal turquoise violet crimson cream ivory bronze copper striped spotted
plaid checkered dark light bright pale colorful colourful multicolored""".split()
MATERIALS = """wooden wood metal metallic plastic glass stone brick concrete leather cotton wool
denim paper cardboard ceramic marble steel iron rubber fabric silk straw wicker tiled""".split()
SIZES = """small large big tiny huge tall short long wide narrow thin thick little giant
round square rectangular circular curved flat empty full""".split()
COUNTS = """two three four five six seven eight nine ten eleven twelve dozen several pair
couple both many few group""".split()
SPATIAL = """on top under underneath below above beside behind front near next between inside
outside across along against around atop beneath left right center centre middle corner
background foreground edge side surrounded facing toward towards holding sitting standing
lying leaning hanging""".split()
#: Phrases that describe the picture rather than what is in it.
GENERIC = [
    r"\b(?:a|an|the) (?:picture|photo|image|photograph|pic|shot|view) of\b",
    r"\b(?:beautiful|nice|amazing|awesome|cool|lovely|stunning|great|gorgeous|cute|perfect|best)\b",
    r"\b(?:something|stuff|things?|someone|somebody|object|objects)\b",
]
TEXT_IN_IMAGE = r"[\"“”].{1,40}[\"“”]|\b(?:that|which) (?:says|reads)\b|\b(?:sign|label|text|logo|writing|words?) (?:saying|reading|that says)\b"
ATTRIBUTE_BONUS = 1.0
TEXT_BONUS = 2.0
GENERIC_PENALTY = 1.5
MAX_WORD_WEIGHT = 4.0
STOP_ZIPF = 6.0  # "the", "of", "with": zipf frequency 6 and above carries no content


@lru_cache(maxsize=32)
def reference_table(lang: str) -> pl.DataFrame:
    """word -> weight for one language, from wordfreq's frozen frequency lists.

    weight = min(4, max(0, 7 - zipf)): the rarer a word in general text, the more it says
    about this image. Zipf frequency is log10 of occurrences per billion words (wordfreq).
    """
    import wordfreq

    try:
        freqs = wordfreq.get_frequency_dict(lang)
    except (LookupError, ValueError):
        freqs = {}
    if not freqs:
        return pl.DataFrame({"w": [], "weight": []}, schema={"w": pl.String, "weight": pl.Float64})
    df = pl.DataFrame({"w": list(freqs.keys()), "f": list(freqs.values())}, schema={"w": pl.String, "f": pl.Float64})
    zipf = pl.col("f").log10() + 9
    weight = pl.when(zipf >= STOP_ZIPF).then(0.0).otherwise((7 - zipf).clip(0.0, MAX_WORD_WEIGHT))
    bonus_words = set(COLOURS + MATERIALS + SIZES + COUNTS + SPATIAL) if lang == "en" else set()
    return df.select(
        "w",
        (weight + pl.col("w").is_in(list(bonus_words)).cast(pl.Float64) * ATTRIBUTE_BONUS).alias("weight"),
    )


class Specificity(Filter):
    """How concrete and descriptive a caption is. Higher is more specific.

    Rule: the sum, over the caption's words, of how rare each word is in general text
    (``7 - zipf``, clipped to 0..4, from wordfreq's frozen frequency lists for the caption's
    language, English when unknown), plus 1 for each colour, material, size, count or
    spatial-relation word, plus 2 when the caption quotes text in the image, minus 1.5 for
    each generic phrase ("a picture of", "beautiful", "something"). Numbers count as count
    words. The table is fixed, so a caption's score never depends on the rest of its run.
    Unit: points (a COCO caption scores about 10 to 25; a 100-word description 80 and up).
    """

    name = "specificity"
    version = 1
    params = {"unknown_weight": 3.0}
    default_min = 4.0

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        lang = batch["lang"] if "lang" in batch.columns else pl.Series([None] * batch.height, dtype=pl.String)
        words = (
            pl.DataFrame({"i": pl.int_range(0, batch.height, eager=True), "t": batch[TEXT], "lang": lang})
            .with_columns(pl.col("lang").fill_null("en"))
            .with_columns(pl.col("t").str.to_lowercase().str.extract_all(r"[\p{L}\p{N}]+(?:['’][\p{L}]+)*").alias("w"))
        )
        exploded = words.select("i", "lang", "w").explode("w").drop_nulls("w")
        parts = []
        for lg in exploded["lang"].unique().to_list():
            ref = reference_table(lg)
            if ref.height == 0:
                ref = reference_table("en")
            sub = exploded.filter(pl.col("lang") == lg).join(ref, on="w", how="left")
            parts.append(sub)
        scored = pl.concat(parts) if parts else exploded.with_columns(weight=pl.lit(0.0))
        scored = scored.with_columns(
            pl.when(pl.col("w").str.contains(r"^\d+$")).then(1.0 + ATTRIBUTE_BONUS)
            .otherwise(pl.col("weight").fill_null(self.p["unknown_weight"])).alias("weight")
        )
        per_row = scored.group_by("i").agg(pl.col("weight").sum().alias("s"))
        t = pl.col("t").str.to_lowercase()
        generic = pl.sum_horizontal([t.str.count_matches(g) for g in GENERIC])
        out = (
            words.select("i", "t").join(per_row, on="i", how="left")
            .sort("i")
            .select(
                (pl.col("s").fill_null(0.0)
                 + t.str.contains(TEXT_IN_IMAGE).cast(pl.Float64) * TEXT_BONUS
                 - generic.cast(pl.Float64) * GENERIC_PENALTY).alias(column)
            )
        )
        return out
