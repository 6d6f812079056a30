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


LONG_OPENERS = ["A wide photograph shows", "In this detailed view,", "The picture captures", "A close-up image shows"]


def make_long(rows: int, seed: int = 11) -> pl.DataFrame:
    """Long, detailed captions of the kind vision-language models write (two to three clauses)."""
    rng = np.random.default_rng(seed)
    n = rows
    parts = [_pick(rng, LONG_OPENERS, n), _pick(rng, SUBJECTS, n), _pick(rng, ACTIONS, n), _pick(rng, PLACES, n),
             _pick(rng, DETAILS, n), _pick(rng, SUBJECTS, n), _pick(rng, ACTIONS, n), _pick(rng, PLACES, n)]
    df = pl.DataFrame({f"p{i}": p for i, p in enumerate(parts)}).select(
        pl.concat_str(["p0", pl.lit(" "), "p1", pl.lit(" "), "p2", pl.lit(" "), "p3", pl.lit(" "), "p4",
                       pl.lit(". In the background, "), "p5", pl.lit(" is "), "p6", pl.lit(" "), "p7",
                       pl.lit(", and the light falls softly across the scene.")]).alias("caption")
    ).with_columns(kind=pl.lit("long_description"))
    return df.with_columns(pl.format("long-{}", pl.int_range(0, df.height)).alias("image_id")).select("caption", "kind", "image_id")


MIX_RECIPE = """# The demo's mixture: written by `curate demo`.
name = "demo"
description = "Web alt-text, clean captions and long descriptions, tilted towards specific captions."
size = {size}
seed = 7
eligible = "keep"
quality = "ln(1 + score__specificity) * (1 - score__junk)"
alpha = 1.0

[caps]
per_dup_group = 1        # one caption per near-duplicate group

[[source]]
name = "web"
run = "runs/web"
share = 0.3

[[source]]
name = "captions"
run = "runs/captions"
share = 0.5

[[source]]
name = "long"
run = "runs/long"
share = 0.2
"""


def run_demo(out: str | Path, rows: int = 2000, console=None) -> dict:
    """The whole path on the built-in sample: score -> dedup -> mix -> export -> report."""
    import time

    from curate.atomic import write_parquet, write_text
    from curate.dedup.run import DedupOptions, dedup
    from curate.export.shards import export
    from curate.mix.build import build_mixture
    from curate.report.html import build_report
    from curate.scoring.chain import load_chain
    from curate.scoring.runner import ScoreOptions, score

    say = console.print if console is not None else (lambda *a, **k: None)
    out = Path(out)
    t0 = time.perf_counter()
    (out / "sample").mkdir(parents=True, exist_ok=True)
    sample = make_sample(rows)
    web = sample.filter(pl.col("kind").is_in(["junk", "generic", "near_duplicate", "model_artefact"])
                        | (pl.col("image_id").str.slice(5).cast(pl.Int64) % 4 == 0))
    captions = sample.join(web, on="image_id", how="anti")
    files = {
        "web": (web, out / "sample" / "web.parquet"),
        "captions": (captions, out / "sample" / "captions.parquet"),
        "long": (make_long(max(rows // 5, 50)), out / "sample" / "long.parquet"),
    }
    chain = load_chain(None)
    runs = {}
    for name, (df, path) in files.items():
        write_parquet(df.to_arrow(), path)
        runs[name] = score([str(path)], out / "runs" / name, chain, ScoreOptions(carry=("kind",), overwrite=True))
        say(f"scored {name}: {runs[name]['rows']:,} rows, {runs[name]['kept']:,} kept -> {out / 'runs' / name}")
    groups = {}
    for name in files:
        groups[name] = dedup(out / "runs" / name, DedupOptions())
        say(f"deduplicated {name}: {_dup_summary(groups[name])}")
    recipe = out / "mixture.toml"
    kept = sum(r["kept"] for r in runs.values())
    write_text(MIX_RECIPE.format(size=max(100, kept // 3)), recipe)
    mix = build_mixture(recipe, out / "mix", overwrite=True)
    say(f"mixed {mix['counts']['rows']:,} rows ({mix['mixture']}) -> {out / 'mix'}")
    exp = export(out / "mix", "parquet", out / "export", overwrite=True)
    say(f"exported {exp.get('rows', '')} rows in {len(exp.get('shards', []))} shard(s) -> {out / 'export'}")
    rep = build_report(out / "mix", out / "report.html")
    say(f"report -> {rep['html']} (numbers in {rep['json']})")
    if console is not None:
        from curate.report.terminal import summary_table

        for name, r in runs.items():
            summary_table(console, r, f"run {name}: default chain")
        by_kind = pl.read_parquet(out / "runs" / "*" / "scores" / "*.parquet").group_by("kind").agg(
            pl.len().alias("rows"), pl.col("keep").mean().round(3).alias("kept_share"),
            pl.col("reason").drop_nulls().mode().first().alias("main_reason"),
        ).sort("kind")
        console.print(by_kind)
        say(f"done in {time.perf_counter() - t0:.1f} s; everything is under {out}")
    return {"runs": runs, "dedup": groups, "mix": mix, "export": exp, "report": rep}


def _dup_summary(info: dict) -> str:
    c = info["counts"]
    return (f"{c['duplicate_rows']:,} duplicates of {c['rows']:,} rows "
            f"in {c['groups_with_duplicates']:,} groups")
