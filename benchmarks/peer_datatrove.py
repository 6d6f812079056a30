"""The peer: the same chain in datatrove, on the same captions, for a throughput comparison.

Runs in its own virtual environment (``bench-out/peer-venv``, made by ``make bench-peer`` or
``bench_score.py --peer``), never in the project's: datatrove needs its own fastText and
spaCy, and must not disturb the project's ``fasttext`` module.

Pipeline, as close to curate's default chain as datatrove's own components allow:

    ParquetReader(caption)
    -> length in words, 3..300
    -> LambdaFilter(10..2000 characters)                                   length in chars
    -> LanguageFilter(ft176 with the given model file, threshold 0.25)    fastText LID
    -> GopherRepetitionFilter(defaults)                                    repetition
    -> ParquetWriter(zstd)

Two variants (``--variant``):

* ``lean`` (the default, and the number the benchmark compares against): datatrove tuned
  for speed as a careful user would: words are ``str.split()`` (a custom ``WordTokenizer``
  given to the repetition filter, a ``LambdaFilter`` for the word count) and the LID asks
  fastText for the top label only (``k=1``).
* ``stock``: datatrove's own components with their defaults: ``GopherQualityFilter`` (only
  its word-count bounds on) and ``GopherRepetitionFilter`` tokenise English with spaCy, and
  the LID scores all 176 labels (``k=-1``). Much slower; run it on fewer rows.

datatrove runs one task per input shard group in ``--workers`` processes; each document is a
Python object that passes through every step one at a time. Prints one JSON line with the
counts and the wall-clock time.

    peer-venv/bin/python benchmarks/peer_datatrove.py --input DIR --model lid.176.ftz --out DIR
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def build_pipeline(input_dir: str, model: str, out: str, variant: str = "lean"):
    from datatrove.pipeline.filters import (
        GopherQualityFilter,
        GopherRepetitionFilter,
        LambdaFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.lid import FT176LID
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        """Words are runs of non-space characters (``str.split``)."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    class LocalFT176(FT176LID):
        """datatrove's ft176 LID, loading a given model file instead of downloading one."""

        def __init__(self, path: str, k: int):
            super().__init__(None, k=k)
            self.path = path

        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _FastText(self.path)
            return self._model

    lid = LanguageFilter(language_threshold=0.25)
    if variant == "stock":
        lid.model = LocalFT176(model, k=-1)
        words = GopherQualityFilter(
            min_doc_words=3, max_doc_words=300,
            min_avg_word_length=None, max_avg_word_length=None, max_symbol_word_ratio=None,
            max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
            max_non_alpha_words_ratio=None, min_stop_words=None,
        )
        repetition = GopherRepetitionFilter()
    else:
        lid.model = LocalFT176(model, k=1)
        words = LambdaFilter(lambda doc: 3 <= len(doc.text.split()) <= 300)
        repetition = GopherRepetitionFilter(language=SplitTokenizer())
    return [
        ParquetReader(input_dir, text_key="caption", glob_pattern="*.parquet", read_metadata=False),
        words,
        LambdaFilter(lambda doc: 10 <= len(doc.text) <= 2000),
        lid,
        repetition,
        ParquetWriter(out, output_filename="${rank}.parquet", compression="zstd"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder of Parquet shards with a caption column")
    ap.add_argument("--model", required=True, help="fastText LID model file (lid.176.ftz)")
    ap.add_argument("--out", required=True, help="output folder (replaced)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=None, help="datatrove tasks (default: = workers)")
    ap.add_argument("--variant", choices=("lean", "stock"), default="lean")
    args = ap.parse_args()

    from datatrove.executor import LocalPipelineExecutor

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    executor = LocalPipelineExecutor(
        pipeline=build_pipeline(args.input, args.model, str(out / "data"), args.variant),
        tasks=args.tasks or args.workers, workers=args.workers,
        logging_dir=str(out / "logs"), skip_completed=False,
    )
    stats = executor.run()
    seconds = time.perf_counter() - t0
    import pyarrow.parquet as pq

    rows_in = sum(pq.ParquetFile(p).metadata.num_rows for p in Path(args.input).glob("*.parquet"))
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "data").glob("*.parquet"))
    print(json.dumps({"rows": rows_in, "kept": kept, "seconds": round(seconds, 3),
                      "workers": args.workers, "variant": args.variant}))


if __name__ == "__main__":
    main()
