"""The commands for learned filters: train a classifier, pick captions to label."""
from __future__ import annotations

import click

from curate.cli.common import fmt, friendly, make_console


@click.command()
@click.argument("labels", nargs=-1, required=True)
@click.option("--label", "label", required=True, help="Column that holds the label.")
@click.option("--positive", default=None, help="The label value of good captions (default: 1, true, yes, good...).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--method", type=click.Choice(["fasttext", "probe"]), default="fasttext", show_default=True,
              help="fastText supervised on the text, or a logistic probe on sentence embeddings.")
@click.option("--embedder", type=click.Choice(["static", "minilm"]), default="static", show_default=True,
              help="With --method probe: the sentence embedder.")
@click.option("--caption-column", default="caption", show_default=True, help="Column that holds the caption.")
@click.option("--group", default=None, help="Column whose rows stay on one side of the split (e.g. image_id).")
@click.option("--holdout", type=click.FloatRange(0.05, 0.9), default=0.3, show_default=True,
              help="Share of groups (or captions) held out for the metrics.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.5,
              show_default=True, help="P(positive) from which a caption counts as positive in the metrics.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of training.")
@click.option("--overwrite", is_flag=True, help="Replace a model already in --out.")
@friendly
def train(labels, label, positive, out, method, embedder, caption_column, group, holdout, threshold, seed,
          overwrite):
    """Train a caption-quality classifier from labelled captions.

    LABELS are label files in any input format (a caption column and the --label column),
    or scored runs followed by label files with sample_id and the --label column. Writes
    OUT/model.bin (or probe.npy) and OUT/metrics.json: held-out ROC AUC, accuracy,
    precision and recall, next to the same for specificity alone. Use the model in a chain:
    [[filter]] name = "classifier", params = { model = "OUT" }.

    \b
    Example:
      curate train labelled.csv --label good --out models/quality
      curate train runs/web to_label.csv --label label --positive yes --out models/q --method probe
    """
    from curate.train.fit import Settings
    from curate.train.run import train as run_train

    s = Settings(method=method, embedder=embedder, holdout=holdout, seed=seed, threshold=threshold)
    meta = run_train(list(labels), label, out, positive, caption_column, group, s, overwrite)
    console = make_console()
    from rich.table import Table

    v = meta["validation"]
    table = Table(title=f"held-out part: {v['classifier']['rows']:,} rows, {v['classifier']['positives']:,} positive "
                        f"({meta['positive']!r})")
    for col in ("scorer", "threshold", "ROC AUC", "accuracy", "precision", "recall"):
        table.add_column(col, justify="left" if col == "scorer" else "right")
    for name, m in ((f"classifier ({method})", v["classifier"]), (v["specificity"]["filter"], v["specificity"])):
        table.add_row(name, *(fmt(m[k]) for k in ("threshold", "roc_auc", "accuracy", "precision", "recall")))
    console.print(table)
    console.print(f"trained on {meta['split']['train_rows']:,} rows in {meta['timings']['fit_s']:.1f} s; "
                  f"wrote {out} (sha256 {meta['model_sha256'][:12]}…)", highlight=False)


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--n", "n", type=click.IntRange(1, 1_000_000), default=200, show_default=True, help="Captions to pick.")
@click.option("--by", type=click.Choice(["reason", "score"]), default="reason", show_default=True,
              help="Strata: the decision (kept or the reason dropped), or quintiles of a score.")
@click.option("--score", "score_column", default=None, help="With --by score: the score column (default score__specificity).")
@click.option("--uncertain", "model", default=None, type=click.Path(file_okay=False),
              help="A model folder: pick the captions it is least sure of instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draw.")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="CSV file to write.")
@friendly
def sample(run, n, by, score_column, model, seed, out):
    """Pick captions of a run to label: a stratified draw, or the ones a model is least sure of.

    Writes a CSV with sample_id, source, row, caption, the stratum (or the model's
    p_positive) and an empty label column; fill it in and pass it to `curate train`.

    \b
    Example:
      curate sample runs/web --n 200 --by reason --out to_label.csv
      curate sample runs/web --n 200 --uncertain models/quality --out round2.csv
    """
    from curate.train.sample import sample_run

    df = sample_run(run, out, n, by, score_column, model, seed)
    console = make_console()
    what = f"the {df.height:,} captions {model} is least sure of" if model else \
        f"{df.height:,} captions over {df['stratum'].n_unique()} strata ({by})"
    console.print(f"wrote {what} to {out}", highlight=False)
