"""The file each trainer reads to draw an export's sources at the mixture's shares.

``final`` is where the export's sources lie once written: a local folder (absolute path),
or the URL of the export's version in a store (``s3://bucket/out/.v/NAME``). Each trainer's
file names the shards the way that trainer reads data from there:

=========  ==========================================  ==========================================
trainer    local folder                                store (``s3://``)
=========  ==========================================  ==========================================
open_clip  ``--train-data /out/a/shard-{0..n}.tar``    ``pipe:aws s3 cp s3://.../shard-{0..n}.tar -``
                                                       (open_clip's README: webdataset reads a pipe)
energon    ``path: ./a`` (relative to the blend file)  the same: the blend file is opened as
                                                       ``msc://PROFILE/bucket/...`` (MSC config)
mds        ``Stream(local=/out/a)``                    ``Stream(remote=s3://.../a, local=CACHE)``
litdata    ``input_dir: /out/a``                       ``input_dir: s3://.../a``
hf         ``data_files: /out/a/train-*.parquet``      ``data_files: s3://.../a/train-*.parquet``
                                                       (fsspec; ``storage_options`` for the store)
=========  ==========================================  ==========================================
"""
from __future__ import annotations

import json
import shlex

from curate.export.writers import TRAINERS
from curate.storage.fs import is_url, join


def mix_file_text(trainer: str, final: str, plan: list[dict]) -> tuple[str, str]:
    """The mixing file's text and how to load the export with it."""
    remote = is_url(final)
    names = [p["name"] for p in plan]
    shares = [p["share"] for p in plan]
    mix_file = join(final, TRAINERS[trainer].mix_file)
    if trainer == "open_clip":
        shards = [f"{join(final, p['name'])}/shard-{{00000..{len(p['shards']) - 1:05d}}}.tar" for p in plan]
        urls = "::".join(f"pipe:aws s3 cp {s} -" if remote else s for s in shards)
        factors = "::".join(f"{p['factor']:.9g}" for p in plan)
        args = ["--dataset-type", "webdataset", "--dataset-resampled", "--train-data", urls,
                "--train-data-upsampling-factors", factors,
                "--train-num-samples", str(sum(p["exported"] for p in plan))]
        read = f"aws s3 cp {mix_file} -" if remote else f"cat {mix_file}"
        return shlex.join(args) + "\n", f'eval "python -m open_clip_train.main $({read}) ..."'
    if trainer == "energon":
        lines = ["__module__: megatron.energon", "__class__: MetadatasetV2", "splits:", "  train:", "    blend:"]
        for n, w in zip(names, shares):
            lines += [f"      - weight: {w!r}", f"        path: ./{n}", "        subflavors:", f"          source: {n}"]
        where = f"msc://PROFILE/{mix_file.split('://', 1)[1]}" if remote else mix_file
        return "\n".join(lines) + "\n", f"megatron.energon.get_train_dataset('{where}', ...)"
    if trainer == "mds":
        key = "remote" if remote else "local"
        streams = [{"name": n, key: join(final, n), "proportion": w} for n, w in zip(names, shares)]
        how = ("Stream(remote=s['remote'], local=CACHE + '/' + s['name'], proportion=s['proportion'])" if remote
               else "Stream(local=s['local'], proportion=s['proportion'])")
        return json.dumps({"streams": streams}, indent=1) + "\n", f"StreamingDataset(streams=[{how} for s in streams])"
    if trainer == "litdata":
        return (json.dumps({"datasets": [{"name": n, "input_dir": join(final, n)} for n in names], "weights": shares},
                           indent=1) + "\n",
                "CombinedStreamingDataset([StreamingDataset(d['input_dir'], item_loader=ParquetLoader()) ...], "
                "weights=weights, iterate_over_all=False)")
    files = {n: join(final, n, "train-*.parquet") for n in names}
    opts = ", storage_options={...}" if remote else ""
    return (json.dumps({"data_files": files, "probabilities": shares}, indent=1) + "\n",
            f"interleave_datasets([load_dataset('parquet', data_files=f, split='train'{opts}) ...], "
            "probabilities=...)")
