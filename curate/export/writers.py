"""The export's writers, by name: ``--format`` shard sets and ``--for`` trainers.

``SHARD_FORMATS`` names each ``curate export --format`` writer once: how its shards are
named, the function that writes one shard, how a data loader reads the set, and whether it
copies image members. ``TRAINERS`` names each ``curate export --for`` trainer with the
mixing file it reads (:mod:`curate.export.trainers` writes them). A new shard format is a
write function and one line in ``SHARD_FORMATS``; the CLI's choices come from these
dictionaries. Nothing heavy is imported until a shard is written, so the CLI can list the
choices at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

#: 64-bit integers that JSON outputs write as strings (JSON readers lose them above 2^63).
BIG_INTS = ("sample_id", "caption_hash")


def json_frame(t: pa.Table) -> pl.DataFrame:
    """The rows as JSON writers take them: ``BIG_INTS`` as strings."""
    import polars as pl

    df = pl.from_arrow(t)
    return df.with_columns([pl.col(c).cast(pl.String) for c in BIG_INTS if c in df.columns])


def tar_bytes(t: pa.Table, expand: bool) -> bytes:
    """A WebDataset tar of one shard's rows (see :func:`curate.export.tar.tar_bytes`)."""
    from curate.export import tar

    return tar.tar_bytes(t, expand, json_frame(t).drop("caption"))


def write_parquet(t: pa.Table, path: Path, expand: bool) -> None:
    import pyarrow.parquet as pq

    pq.write_table(t, path, compression="zstd")


def write_jsonl(t: pa.Table, path: Path, expand: bool) -> None:
    json_frame(t).write_ndjson(path)


def write_tar(t: pa.Table, path: Path, expand: bool) -> None:
    path.write_bytes(tar_bytes(t, expand))


@dataclass(frozen=True)
class ShardFormat:
    """A ``--format`` writer: shards ``<prefix>-00000<ext>`` ..., each written by
    ``write(table, path, expand_repeats)``; ``load_with`` (with ``{out}`` and ``{last}``, the
    last shard's number) goes into ``index.json``."""

    description: str
    prefix: str
    ext: str
    write: Callable[[pa.Table, Path, bool], None]
    load_with: str
    copies_images: bool = False  # image members of samples scored from WebDataset shards
    json_strings: bool = True  # ``BIG_INTS`` written as strings


SHARD_FORMATS: dict[str, ShardFormat] = {
    "parquet": ShardFormat("Parquet parts", "part", ".parquet", write_parquet,
                           'datasets.load_dataset("parquet", data_files="{out}/part-*.parquet", split="train")',
                           json_strings=False),
    "jsonl": ShardFormat("JSON lines parts", "part", ".jsonl", write_jsonl,
                         'datasets.load_dataset("json", data_files="{out}/part-*.jsonl", split="train")'),
    "webdataset": ShardFormat("WebDataset tars (<key>.txt, <key>.json, the image member)", "shard", ".tar",
                              write_tar, 'webdataset.WebDataset("{out}/shard-{{00000..{last:05d}}}.tar")',
                              copies_images=True),
}


@dataclass(frozen=True)
class Trainer:
    """A ``--for`` trainer: what it reads and the mixing file written beside its sources."""

    description: str
    mix_file: str


TRAINERS: dict[str, Trainer] = {
    "open_clip": Trainer("WebDataset tars per source, upsampling factors", "open_clip_args.txt"),
    "energon": Trainer("WebDataset tars prepared with Megatron-Energon, a blend", "energon_blend.yaml"),
    "mds": Trainer("MDS shards per source, streaming proportions", "mds_streams.json"),
    "litdata": Trainer("Parquet parts per source, LitData weights", "litdata_weights.json"),
    "hf": Trainer("Parquet parts per source, interleave_datasets probabilities", "hf_interleave.json"),
}
