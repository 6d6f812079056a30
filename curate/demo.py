"""The built-in demo: a deterministic sample written by curate itself, then the default chain.

The sample mixes what a real caption pool holds: descriptive captions, generic ones, junk
alt-text, several languages, near-duplicates and captioning-model artefacts. It is built
from small word lists with a seeded generator, column-wise (no per-row Python).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

SUBJECTS = ["a man", "a woman", "a young girl", "an old man", "two children", "a brown dog",
            "a black cat", "three horses", "a cyclist", "a group of hikers", "a chef",
            "a red double-decker bus", "a small sailboat", "a fire truck", "a street vendor"]
ACTIONS = ["standing next to", "walking along", "sitting on", "leaning against", "riding past",
           "parked beside", "looking at", "running across", "waiting near", "climbing over"]
PLACES = ["a wooden bench", "a stone wall", "a busy crosswalk", "a sandy beach", "a snowy trail",
          "a glass storefront", "a brick warehouse", "a frozen lake", "a narrow canal",
          "a crowded market stall"]
DETAILS = ["under a cloudy sky", "at sunset", "in the rain", "with tall pine trees behind",
           "while a sign reads \"OPEN\"", "next to a yellow umbrella", "beside two parked bicycles",
           "in front of a white church", "with mountains in the background", "on a foggy morning"]
GENERIC = ["a picture of something", "beautiful image", "nice photo", "an image of a thing",
           "amazing view", "cute", "my photo", "a photo", "awesome stuff here", "great day"]
JUNK = ["IMG_{n}.jpg", "DSC{n}.JPG", "Stock Photo - Happy family at home {n}",
        "Buy now! Leather handbag only $29.99 free shipping", "click here to see more photos {n}",
        "https://example.com/images/{n}.png", "<img src=\"photo{n}.jpg\"> &nbsp;",
        "shoes, cheap shoes, shoes sale, buy shoes, shoes online, best shoes, shoes",
        "image may contain: one or more people", "untitled", "1920x1080 wallpaper {n}",
        "Royalty free vector illustration of a cartoon cat"]
ARTEFACTS = ["I'm sorry, but I can't help with identifying people in this image.",
             "As an AI, I cannot see the image you are referring to.",
             "Sure! Here's a detailed description of the image: a dog on a couch.",
             "a dog on a couch a dog on a couch a dog on a couch a dog on a couch"]
FOREIGN = {
    "de": ["Ein Mann steht neben einem roten Fahrrad vor einer alten Backsteinmauer.",
           "Zwei Kinder spielen im Sand an einem sonnigen Strand.",
           "Eine Frau mit einem blauen Hut geht über den belebten Marktplatz."],
    "fr": ["Un homme assis sur un banc en bois regarde le lac gelé.",
           "Deux chiens courent sur la plage au coucher du soleil.",
           "Une femme portant un manteau rouge attend le bus sous la pluie."],
    "es": ["Un niño pequeño monta en bicicleta por un sendero nevado.",
           "Una mujer vende frutas en un puesto del mercado.",
           "Tres caballos pastan en un prado verde junto a un río."],
    "zh": ["一个男人在雨中骑着红色的自行车", "两只小狗在沙滩上奔跑", "一位老人坐在木椅上看报纸"],
}
AFFIXES = [("Stock Photo - ", ""), ("", " - royalty free image"), ("", "!!"), ("", "")]


def _pick(rng: np.random.Generator, items: list[str], n: int) -> pl.Series:
    return pl.Series(items)[rng.integers(0, len(items), n)]


def make_sample(rows: int = 2000, seed: int = 7) -> pl.DataFrame:
    """A deterministic sample of ``rows`` captions with a ``kind`` column saying what each is."""
    rng = np.random.default_rng(seed)
    n_good = int(rows * 0.45)
    n_dup = int(rows * 0.10)
    n_generic = int(rows * 0.10)
    n_junk = int(rows * 0.15)
    n_art = int(rows * 0.05)
    n_foreign = rows - n_good - n_dup - n_generic - n_junk - n_art
    good = pl.DataFrame({
        "s": _pick(rng, SUBJECTS, n_good), "a": _pick(rng, ACTIONS, n_good),
        "p": _pick(rng, PLACES, n_good), "d": _pick(rng, DETAILS, n_good),
    }).select(
        pl.concat_str([pl.col("s").str.slice(0, 1).str.to_uppercase(), pl.col("s").str.slice(1),
                       pl.lit(" "), "a", pl.lit(" "), "p", pl.lit(" "), "d", pl.lit(".")]).alias("caption")
    ).with_columns(kind=pl.lit("descriptive"))
    # near-duplicates: copies of descriptive captions with case, punctuation or affix edits
    src = good["caption"][rng.integers(0, max(n_good, 1), n_dup)]
    aff = rng.integers(0, len(AFFIXES), n_dup)
    pre = pl.Series([a[0] for a in AFFIXES])[aff]
    suf = pl.Series([a[1] for a in AFFIXES])[aff]
    lower = pl.Series(rng.random(n_dup) < 0.5)
    dups = pl.DataFrame({"c": src, "pre": pre, "suf": suf, "lower": lower}).select(
        pl.concat_str([
            "pre",
            pl.when("lower").then(pl.col("c").str.to_lowercase().str.strip_chars_end(".")).otherwise("c"),
            "suf",
        ]).alias("caption")
    ).with_columns(kind=pl.lit("near_duplicate"))
    numbers = pl.Series(rng.integers(1000, 9999, n_junk)).cast(pl.String)
    junk = pl.DataFrame({"t": _pick(rng, JUNK, n_junk), "n": numbers}).select(
        pl.col("t").str.replace_all("{n}", pl.col("n"), literal=True).alias("caption")
    ).with_columns(kind=pl.lit("junk"))
    frames = [
        good, dups,
        pl.DataFrame({"caption": _pick(rng, GENERIC, n_generic)}).with_columns(kind=pl.lit("generic")),
        junk,
        pl.DataFrame({"caption": _pick(rng, ARTEFACTS, n_art)}).with_columns(kind=pl.lit("model_artefact")),
    ]
    langs = sorted(FOREIGN)
    lang_idx = rng.integers(0, len(langs), n_foreign)
    all_foreign = [c for lg in langs for c in FOREIGN[lg]]
    offset = np.array([sum(len(FOREIGN[x]) for x in langs[:i]) for i in range(len(langs))])
    pick = offset[lang_idx] + rng.integers(0, 3, n_foreign)
    frames.append(pl.DataFrame({"caption": pl.Series(all_foreign)[pick]}).with_columns(
        kind=pl.lit("foreign_language")))
    df = pl.concat(frames)
    order = rng.permutation(df.height)
    df = df[order]
    return df.with_columns(
        pl.format("demo-{}", pl.int_range(0, df.height)).alias("image_id"),
    ).select("caption", "kind", "image_id")


def run_demo(out: str | Path, rows: int = 2000, console=None) -> dict:
    from .atomic import write_parquet
    from .chain import load_chain
    from .run import ScoreOptions, score

    out = Path(out)
    (out / "sample").mkdir(parents=True, exist_ok=True)
    sample_path = out / "sample" / "demo.parquet"
    write_parquet(make_sample(rows).to_arrow(), sample_path)
    chain = load_chain(None)
    run = score([str(sample_path)], out / "runs" / "demo", chain, ScoreOptions(carry=("kind",), overwrite=True))
    if console is not None:
        from .cli import _summary_table

        _summary_table(console, run, "curate demo: default chain on the built-in sample")
        scores = pl.read_parquet(out / "runs" / "demo" / "scores" / "*.parquet")
        by_kind = scores.group_by("kind").agg(
            pl.len().alias("rows"), pl.col("keep").mean().round(3).alias("kept_share"),
            pl.col("reason").drop_nulls().mode().first().alias("main_reason"),
        ).sort("kind")
        console.print(by_kind)
        console.print(f"sample: {sample_path}\nrun: {out / 'runs' / 'demo'} (scores/, run.json, chain.toml)")
    return run
