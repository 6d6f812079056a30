"""WebDataset shards (img2dataset's layout): one row per sample key, images indexed, not read.

A shard is a tar file whose members are grouped into samples by key: ``00042.jpg``,
``00042.txt`` and ``00042.json`` are one sample (the key is the member's path up to the
first dot of its base name, as in ``webdataset``). Each sample becomes one row:

* ``caption``: the ``.txt`` member (or, where a sample has none, the ``.json``'s
  ``caption`` field); ``--caption-column FIELD`` takes a field of the ``.json`` instead;
* ``key``: the sample key; every field of the ``.json`` member as a column;
* ``image_member``, ``image_offset``, ``image_size``: the first image member's name, the
  byte offset of its data in the tar and its length, so that ``curate export`` can copy it
  byte for byte. Images are never decoded or held in memory.

* ``image_hash``: a 64-bit content hash of the image's bytes
  (:func:`curate.hashing.member_hashes`), computed in the same pass; ``curate verify`` and
  ``curate export`` compare it with the bytes found later.

Fields of the ``.json`` keep their JSON types: numbers are numbers (Int64 or Float64 as the
first window of the shard holds them), ``true``/``false`` booleans, other values text.

``row`` is the sample's index in the tar. :mod:`curate.ingest.tarscan` reads the members
(ustar, pax and GNU long-name headers with numpy; anything else through :mod:`tarfile`).
"""
from __future__ import annotations

from typing import Iterator

import polars as pl

from curate.errors import CurateError, first_line
from curate.ingest.formats.base import select_columns
from curate.ingest.tarscan import IMAGE_EXTS, members
from curate.ingest.text import lone_surrogates_replaced, to_text

#: Columns every WebDataset input has (besides the ``.json`` fields).
INDEX_COLUMNS = ("caption", "key", "image_member", "image_offset", "image_size", "image_hash")
INDEX_TYPES = {"image_offset": "Int64", "image_size": "Int64", "image_hash": "UInt64"}
#: Bytes at the start of a shard that give its columns and their types.
INSPECT_WINDOW = 8 << 20


def samples(path: str, batch_rows: int = 100_000, max_rows: int | None = None,
            window: int | None = None) -> Iterator[pl.DataFrame]:
    """Rows of one shard: caption (from .txt), key, the image index and each .json field."""
    held = None
    rows = 0
    for frame in members(path, window):
        if held is not None:
            frame = pl.concat([held, frame])
        sample = _sample_index(frame["key"])
        last = int(sample.max() if frame.height else -1)
        frame = frame.with_columns(sample=sample)
        # the last sample may go on in the next window
        held = frame.filter(pl.col("sample") == last).drop("sample")
        done = frame.filter(pl.col("sample") < last)
        if done.height:
            out = _sample_rows(path, done)
            rows += out.height
            yield out
        if max_rows is not None and rows >= max_rows:
            return
    if held is not None and held.height:
        yield _sample_rows(path, held.with_columns(sample=_sample_index(held["key"])))


def _sample_index(keys: pl.Series) -> pl.Series:
    """0, 1, ... for the runs of equal keys (a sample is consecutive members of one key)."""
    return (keys != keys.shift(1)).fill_null(True).cast(pl.Int64).cum_sum() - 1


def _sample_rows(path: str, m: pl.DataFrame) -> pl.DataFrame:
    """One row per sample from its members (vectorised: filters and joins on the sample
    index, which ascends)."""
    first = pl.col("sample").is_first_distinct()
    rows = m.filter(first).select("sample", "key")
    one = lambda which: m.filter(which).filter(first)  # noqa: E731
    txt = one(pl.col("ext") == "txt")
    txt = txt.select("sample", to_text(txt["data"]).alias("caption"))
    img = one(pl.col("ext").is_in(IMAGE_EXTS)).select(
        "sample", pl.col("name").alias("image_member"), pl.col("offset").alias("image_offset"),
        pl.col("size").alias("image_size"), pl.col("hash").alias("image_hash"))
    out = rows.join(txt, on="sample", how="left").join(img, on="sample", how="left")
    js = one(pl.col("ext") == "json")
    if js.height:
        fields = _json_fields(path, js)
        if "caption" in fields.columns:
            fields = fields.rename({"caption": "__json_caption"})
        fields = fields.drop([c for c in INDEX_COLUMNS if c in fields.columns])
        out = out.join(fields, on="sample", how="left")
        if "__json_caption" in out.columns:
            jc = out["__json_caption"]
            jc = jc if jc.dtype == pl.String else jc.cast(pl.String, strict=False)
            out = out.with_columns(pl.coalesce(pl.col("caption"), jc).alias("caption"),
                                   jc.alias("caption_json")).drop("__json_caption")
    if out.height and out["sample"][-1] != out.height - 1 + out["sample"][0]:
        raise CurateError("internal error: samples out of order")
    return out.drop("sample").with_columns(
        pl.col("image_offset").cast(pl.Int64), pl.col("image_size").cast(pl.Int64),
        pl.col("image_hash").cast(pl.UInt64),
        pl.col("caption").cast(pl.String), pl.col("image_member").cast(pl.String))


def _json_fields(path: str, js: pl.DataFrame) -> pl.DataFrame:
    """The .json members parsed in one call (raw newlines, which JSON allows only as white
    space, become spaces, so each document is one line)."""
    text = to_text(js["data"]).str.replace_all(r"[\r\n]", " ")
    text = pl.select(pl.when(text.str.strip_chars() == "").then(pl.lit("{}")).otherwise(text)).to_series()
    # lone surrogate escapes are looked for (one regex pass) only in documents with a
    # surrogate escape at all (emoji, as json.dumps writes them)
    odd = text.str.contains(r"\\u[dD][89a-fA-F]").arg_true()
    if len(odd):
        fixed = lone_surrogates_replaced(text.gather(odd).str.join("\n").item()).split("\n")
        text = text.scatter(odd, pl.Series(fixed, dtype=pl.String))
    blob = text.str.join("\n").item() + "\n"
    try:
        parsed = pl.read_ndjson(blob.encode(), infer_schema_length=None)
    except Exception as e:
        import json

        for name, doc in zip(js["name"], text):  # only after a failure: name the member
            try:
                if not isinstance(json.loads(doc), dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                raise CurateError(f"member {name!r} is not valid JSON ({first_line(err)})") from None
        raise CurateError(f"the .json members are not valid JSON ({first_line(e)})") from None
    if parsed.height != js.height:
        raise CurateError("a .json member is not one JSON object")
    return parsed.with_columns(js["sample"])


def inspect(path: str) -> tuple[list[str], bool, dict[str, str]]:
    """(columns, empty, types) from the first :data:`INSPECT_WINDOW` bytes of a shard: a
    ``.json`` field's type is Int64, Float64 or Boolean where its values there are all of that
    kind, Null where they are all null, else String (lists and objects are JSON text)."""
    for batch in samples(path, max_rows=1, window=INSPECT_WINDOW):
        types = dict(INDEX_TYPES)
        for c, t in batch.schema.items():
            if c not in INDEX_COLUMNS:
                kind = "Int64" if t.is_integer() else "Float64" if t.is_float() else str(t)
                types[c] = kind if kind in ("Int64", "Float64", "Boolean", "Null") else "String"
        return list(dict.fromkeys([*INDEX_COLUMNS, *batch.columns])), False, types
    return list(INDEX_COLUMNS), True, dict(INDEX_TYPES)


def read(path: str, cols: list[str], batch_rows: int) -> Iterator[pl.DataFrame]:
    """Batches of ``batch_rows`` samples (the last one fewer) with the columns ``cols`` (null
    where absent): a window of a shard with large images holds a few thousand samples, and
    scoring is cheaper per row in full batches."""
    held: list[pl.DataFrame] = []
    rows = 0
    for frame in samples(path):
        held.append(select_columns(frame, cols))
        rows += frame.height
        if rows >= batch_rows:
            whole = pl.concat(held, how="vertical_relaxed")
            cut = rows - rows % batch_rows
            for i in range(0, cut, batch_rows):
                yield whole.slice(i, batch_rows)
            held, rows = [whole.slice(cut)], rows - cut
    if rows:
        yield pl.concat(held, how="vertical_relaxed")
