"""curate train, the classifier filter and curate sample: behaviour on invented examples,
accuracy on real captions (trained on one half of the images, tested on the other)."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.errors import CurateError
from curate.scoring.chain import parse_chain
from curate.scoring.filters.classifier import METRICS_FILE, load_model
from curate.train.fit import Settings
from curate.train.run import train
from curate.train.sample import quotas, sample_run

GOOD = ["a brown dog runs across a green field", "two children build a sandcastle on the beach",
        "a red bus waits at a stop in the rain", "an old man reads a newspaper on a bench",
        "a cat sleeps on a blue sofa near the window", "three horses graze in a foggy meadow",
        "a woman rides a bicycle along the river", "a chef slices vegetables in a small kitchen"]
BAD = ["buy cheap shoes online free shipping", "IMG_2041.jpg", "click here for more deals",
       "best price guaranteed shop now", "stock photo royalty free image 123", "download wallpaper hd 4k",
       "sale sale sale limited offer", "logo png transparent background"]


def labelled(n: int = 40) -> pl.DataFrame:
    """n invented captions per class, each a template caption with a numbered variant."""
    rows = [(f"{GOOD[i % 8]} number {i}", "yes", f"g{i}") for i in range(n)]
    rows += [(f"{BAD[i % 8]} {i}", "no", f"b{i}") for i in range(n)]
    return pl.DataFrame(rows, schema=["caption", "good", "image"], orient="row")


def cli_error(args) -> str:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    labelled().write_csv(d / "labels.csv")
    meta = train([str(d / "labels.csv")], "good", d / "model", positive="yes", group="image")
    return d, meta


def test_train_writes_a_model_folder_with_metrics(small_model):
    d, meta = small_model
    on_disk = json.loads((d / "model" / METRICS_FILE).read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert (d / "model" / "model.bin").is_file()
    assert meta["method"] == "fasttext" and meta["positive"] == "yes" and meta["negatives"] == ["no"]
    v = meta["validation"]
    for key in ("roc_auc", "accuracy", "precision", "recall", "threshold"):
        assert key in v["classifier"] and key in v["specificity"]
    assert v["classifier"]["rows"] == meta["split"]["holdout_rows"] > 0
    assert meta["labels"]["rows"] == 80 and len(meta["labels"]["fingerprint"]) == 32
    assert meta["settings"]["seed"] == 0 and meta["settings"]["method"] == "fasttext"


def test_training_is_seeded_and_ignores_row_order(small_model, tmp_path):
    d, meta = small_model
    labelled().reverse().write_csv(tmp_path / "rev.csv")
    again = train([str(tmp_path / "rev.csv")], "good", tmp_path / "m", positive="yes", group="image")
    assert again["labels"]["fingerprint"] == meta["labels"]["fingerprint"]
    assert again["model_sha256"] == meta["model_sha256"]
    text = pl.Series(["a dog sleeps on a sofa", "cheap shoes free shipping"])
    assert np.array_equal(load_model(tmp_path / "m").predict(text), load_model(d / "model").predict(text))


def test_group_split_keeps_an_image_on_one_side(tmp_path):
    df = labelled().with_columns(image=pl.col("image").str.slice(0, 1) + (pl.int_range(80) % 10).cast(pl.String))
    df.write_parquet(tmp_path / "l.parquet")
    from curate.train.labels import holdout_mask, read_labels

    labels = read_labels([str(tmp_path / "l.parquet")], "good", "yes", group="image")
    held = holdout_mask(labels.frame["key"], 0.5, 0)
    sides = pl.DataFrame({"image": df["image"], "held": held}).group_by("image").agg(pl.col("held").n_unique())
    assert sides["held"].max() == 1


def test_classifier_filter_scores_probabilities_in_a_chain(small_model):
    d, meta = small_model
    chain = parse_chain({"filter": [{"name": "classifier", "id": "q", "params": {"model": str(d / "model")}}]})
    from curate.report.explore import score

    out = score(pl.DataFrame({"caption": ["a dog runs across a green field", "cheap shoes free shipping", ""]}), chain)
    p = out["score__q"].to_list()
    assert 0 <= p[1] < 0.5 < p[0] <= 1 and p[2] == 0.0
    assert out["keep"].to_list() == [True, False, False]
    assert chain.steps[0].filter.model_files() == {"model/model.bin": meta["model_sha256"]}


def test_score_records_the_model_hash_and_decide_and_mix_use_the_score(small_model, tmp_path):
    d, meta = small_model
    (tmp_path / "chain.toml").write_text(
        f'name = "c"\n[[filter]]\nname = "classifier"\nid = "q"\nparams = {{ model = "{d / "model"}" }}\n')
    r = CliRunner().invoke(cli, ["score", str(d / "labels.csv"), "--chain", str(tmp_path / "chain.toml"),
                                 "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["model_files"]["model/model.bin"] == meta["model_sha256"]
    (tmp_path / "strict.toml").write_text((tmp_path / "chain.toml").read_text() + "min = 0.9\n")
    assert CliRunner().invoke(cli, ["decide", str(tmp_path / "run"), "--chain", str(tmp_path / "strict.toml")]).exit_code == 0
    scores = pl.read_parquet(tmp_path / "run" / "scores" / "*.parquet")
    assert (scores["keep"] == (scores["score__q"] >= 0.9)).all()
    (tmp_path / "mix.toml").write_text(
        'size = 10\nquality = "score__q"\n[[source]]\nname = "s"\nrun = "run"\nshare = 1.0\n')
    r = CliRunner().invoke(cli, ["mix", str(tmp_path / "mix.toml"), "--out", str(tmp_path / "mix")])
    assert r.exit_code == 0, r.output
    m = pl.read_parquet(tmp_path / "mix" / "manifest.parquet")
    assert m.height == 10 and (m["quality"] >= 0.9).all()


def test_train_joins_a_run_with_a_label_file_by_sample_id(small_model, tmp_path):
    d, _ = small_model
    assert CliRunner().invoke(cli, ["score", str(d / "labels.csv"), "--out", str(tmp_path / "run")]).exit_code == 0
    run = pl.read_parquet(tmp_path / "run" / "scores" / "*.parquet")
    lab = run.select("sample_id", good=pl.col("caption").is_in(labelled()["caption"].head(40).implode()))
    lab.write_csv(tmp_path / "ids.csv")
    meta = train([str(tmp_path / "run"), str(tmp_path / "ids.csv")], "good", tmp_path / "m")
    assert meta["positive"] == "true" and meta["labels"]["rows"] == 80
    assert meta["labels"]["fingerprint"] == train([str(d / "labels.csv")], "good", tmp_path / "m2",
                                                  positive="yes")["labels"]["fingerprint"]


def test_probe_on_static_embeddings(small_model, tmp_path):
    d, _ = small_model
    meta = train([str(d / "labels.csv")], "good", tmp_path / "p", positive="yes", group="image",
                 settings=Settings(method="probe", embedder="static"))
    assert (tmp_path / "p" / "probe.npy").is_file() and meta["embedder"]["name"] == "static"
    p = load_model(tmp_path / "p").predict(pl.Series(["a dog runs across a green field", "cheap shoes free shipping"]))
    assert p[0] > p[1]
    again = train([str(d / "labels.csv")], "good", tmp_path / "p2", positive="yes", group="image",
                  settings=Settings(method="probe", embedder="static"))
    assert again["model_sha256"] == meta["model_sha256"]


# -- bad input: one line each -----------------------------------------------------------------


def test_one_label_value_only(tmp_path):
    labelled().with_columns(good=pl.lit("yes")).write_csv(tmp_path / "l.csv")
    assert "has one value only" in cli_error(["train", str(tmp_path / "l.csv"), "--label", "good", "--out", str(tmp_path / "m")])


def test_fewer_than_20_labelled_rows(tmp_path):
    labelled(8).with_columns(good=pl.when(pl.int_range(16) < 14).then(pl.lit("")).otherwise("good")) \
        .write_csv(tmp_path / "l.csv")
    msg = cli_error(["train", str(tmp_path / "l.csv"), "--label", "good", "--out", str(tmp_path / "m")])
    assert "2 labelled rows" in msg and "at least 20" in msg


def test_labels_not_in_the_file(small_model, tmp_path):
    d, _ = small_model
    msg = cli_error(["train", str(d / "labels.csv"), "--label", "quality", "--out", str(tmp_path / "m")])
    assert "no column 'quality'" in msg and "caption, good, image" in msg
    msg = cli_error(["train", str(d / "labels.csv"), "--label", "good", "--positive", "great", "--out", str(tmp_path / "m")])
    assert "'great' is not a value" in msg and "'no', 'yes'" in msg
    assert "--positive" in cli_error(["train", str(d / "labels.csv"), "--label", "image", "--out", str(tmp_path / "m")])


def test_a_folder_that_is_not_a_model(small_model, tmp_path):
    d, _ = small_model
    (tmp_path / "chain.toml").write_text(f'[[filter]]\nname = "classifier"\nparams = {{ model = "{tmp_path}" }}\n')
    msg = cli_error(["score", str(d / "labels.csv"), "--chain", str(tmp_path / "chain.toml"), "--out", str(tmp_path / "r")])
    assert "not a curate classifier model" in msg
    with pytest.raises(CurateError, match="needs params"):
        parse_chain({"filter": [{"name": "classifier"}]})


def test_a_model_of_another_method_version(small_model, tmp_path):
    import shutil

    d, _ = small_model
    shutil.copytree(d / "model", tmp_path / "old")
    meta = json.loads((tmp_path / "old" / METRICS_FILE).read_text())
    (tmp_path / "old" / METRICS_FILE).write_text(json.dumps({**meta, "method_version": 0}))
    msg = cli_error(["sample", str(d), "--uncertain", str(tmp_path / "old"), "--out", str(tmp_path / "s.csv")])
    assert "not a curate run" in msg  # the run is checked first
    with pytest.raises(CurateError, match="trained by fasttext version 0, this curate reads version 1"):
        load_model(tmp_path / "old")


def test_a_damaged_model_file(small_model, tmp_path):
    import shutil

    d, _ = small_model
    shutil.copytree(d / "model", tmp_path / "m")
    with open(tmp_path / "m" / "model.bin", "ab") as f:
        f.write(b"x")
    with pytest.raises(CurateError, match="sha256 differs"):
        load_model(tmp_path / "m")


# -- curate sample ---------------------------------------------------------------------------------


def test_quotas_are_equal_and_give_unused_shares_away():
    assert quotas({"a": 100, "b": 100, "c": 100}, 30) == {"a": 10, "b": 10, "c": 10}
    assert quotas({"a": 2, "b": 100, "c": 100}, 30) == {"a": 2, "b": 14, "c": 14}
    assert sum(quotas({"a": 1, "b": 1}, 30).values()) == 2


def test_sample_by_reason_and_uncertain(small_model, tmp_path):
    d, _ = small_model
    (tmp_path / "chain.toml").write_text(
        f'[[filter]]\nname = "length"\nmin = 6\n[[filter]]\nname = "classifier"\nid = "q"\n'
        f'params = {{ model = "{d / "model"}" }}\n')
    assert CliRunner().invoke(cli, ["score", str(d / "labels.csv"), "--chain", str(tmp_path / "chain.toml"),
                                    "--out", str(tmp_path / "run")]).exit_code == 0
    df = sample_run(tmp_path / "run", tmp_path / "s.csv", n=12)
    run = pl.read_parquet(tmp_path / "run" / "scores" / "*.parquet")
    strata = dict(run.group_by(pl.col("reason").fill_null("kept")).len().iter_rows())
    assert len(strata) >= 2
    assert dict(df.group_by("stratum").len().iter_rows()) == {k: v for k, v in quotas(strata, 12).items() if v}
    back = pl.read_csv(tmp_path / "s.csv")
    assert back.columns[-1] == "label" and back.height == 12
    assert sample_run(tmp_path / "run", tmp_path / "s2.csv", n=12)["sample_id"].equals(df["sample_id"])
    unsure = sample_run(tmp_path / "run", tmp_path / "u.csv", n=5, uncertain_model=str(d / "model"))
    dist = (run["score__q"] - 0.5).abs().sort()
    assert (unsure["p_positive"] - 0.5).abs().max() == pytest.approx(dist[4])


# -- real captions: one half of the images to train, the other to test ------------------------------


def _halves(df: pl.DataFrame, path) -> str:
    df.select("caption", "group_id", "label").write_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def human_vs_web(read_data, tmp_path_factory):
    a = read_data("a_", ["caption", "group_id"]).with_columns(label=pl.lit(1))
    c = read_data("c_", ["caption", "group_id"]).with_columns(label=pl.lit(0))
    df = pl.concat([a, c], how="vertical_relaxed").filter(pl.col("caption").str.strip_chars() != "")
    return _halves(df, tmp_path_factory.mktemp("ac") / "ac.parquet")


@pytest.mark.parametrize("method", ["fasttext", "probe"])
def test_human_captions_vs_web_alt_text(human_vs_web, tmp_path, method):
    meta = train([human_vs_web], "label", tmp_path / "m", group="group_id",
                 settings=Settings(method=method, holdout=0.5))
    v = meta["validation"]
    assert v["classifier"]["rows"] > 8000  # about half of the 18k captions
    assert v["classifier"]["roc_auc"] > 0.93
    assert v["classifier"]["roc_auc"] > v["specificity"]["roc_auc"] + 0.1  # trained for the task, it beats the generic score


def test_thumb_top_third_vs_bottom_third(read_data, tmp_path):
    df = read_data("e_thumb", ["caption", "group_id", "score_recall_1to5"])
    r = pl.col("score_recall_1to5")
    lo, hi = df["score_recall_1to5"].quantile(1 / 3), df["score_recall_1to5"].quantile(2 / 3)
    df = df.with_columns(label=pl.when(r > hi).then(1).when(r <= lo).then(0)).drop_nulls("label")
    path = _halves(df, tmp_path / "thumb.parquet")
    for method in ("fasttext", "probe"):
        v = train([path], "label", tmp_path / method, group="group_id",
                  settings=Settings(method=method, holdout=0.5))["validation"]
        # about 250 held-out captions: an AUC's standard error is about 0.035, so 0.57 is
        # better than chance; specificity (about 0.77 here) is not beaten at this size
        assert v["classifier"]["roc_auc"] > 0.57, (method, v)
