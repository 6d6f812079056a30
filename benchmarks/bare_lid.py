"""A bare batched fastText predict over Parquet captions, one thread: the floor to compare
`curate score` against (bench_score.py --lid runs it as a separate process).

    python benchmarks/bare_lid.py FOLDER [--binding fasttext_new|fasttext]

Reads every ``caption`` of FOLDER/*.parquet in batches of 100k, replaces newlines (fastText
reads one line per text) and asks ``lid.176.ftz`` for the top label of every caption, one
call per batch, on one thread; nothing else (no cleaning, no script rules, no writing).
``fasttext_new`` is the binding curate installs; ``fasttext`` is any distribution of the
``fasttext`` module, if one is installed (fasttext-numpy2-wheel was curate's before).
Prints captions, wall and CPU seconds as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--binding", choices=["fasttext_new", "fasttext"], default="fasttext_new")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from curate.scoring.filters.language import bundled_lid_model

    t0, c0 = time.perf_counter(), time.process_time()
    if a.binding == "fasttext_new":
        import fasttext_new

        model = fasttext_new.load_model(str(bundled_lid_model()))

        def predict(lines: list[str]) -> int:
            labels, flat, _ = model.f.predict_batch(lines, 1, 0.0, 1, "replace")
            return len(np.frombuffer(flat, np.float32))
    else:
        import fasttext

        model = fasttext.load_model(str(bundled_lid_model()))

        def predict(lines: list[str]) -> int:
            labels, probs = model.f.multilinePredict(lines, 1, 0.0, "replace")
            return len(np.concatenate(probs))

    end = "\n" if a.binding == "fasttext" else ""  # the C++ binding reads up to a newline
    n = 0
    for f in sorted(a.folder.glob("*.parquet")):
        for rb in pq.ParquetFile(f).iter_batches(batch_size=100_000, columns=["caption"]):
            col = pc.replace_substring(pc.fill_null(rb.column(0), ""), "\n", " ")
            n += predict(pc.binary_join_element_wise(col, end, "").to_pylist())
    print(json.dumps({"binding": a.binding, "captions": n, "wall_s": time.perf_counter() - t0,
                      "cpu_s": time.process_time() - c0}))


if __name__ == "__main__":
    main()
