"""One decision rule: `score`/`decide`, `explain` and the mixture agree on every row of a
real run, including rows that have no external (neardup) score yet."""
from __future__ import annotations

import polars as pl
import pytest

from curate.audit.explain import explain
from curate.dedup.run import DedupOptions, dedup
from curate.engines import score
from curate.mix.build import build_mixture
from curate.scoring.chain import load_chain
from curate.scoring.decide import decide_run
from curate.scoring.decision import step_outcomes
from curate.scoring.runner import ScoreOptions


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, read_data):
    d = tmp_path_factory.mktemp("decision")
    caps = pl.concat([read_data("a_coco", ["caption"]).head(1500), read_data("c_laion", ["caption"]).head(1500),
                      read_data("c_redcaps", ["caption"]).head(1000)])
    caps = pl.concat([caps, caps.head(300)])  # exact copies, for neardup to find later
    caps.write_parquet(d / "caps.parquet")
    score([str(d / "caps.parquet")], d / "run", load_chain("default-dedup"), ScoreOptions(batch_rows=1000))
    return d


def reasons_by_rule(run, chain) -> pl.DataFrame:
    df = pl.read_parquet(run / "scores" / "*.parquet")
    out = step_outcomes(df, chain)
    reason = pl.when(out["empty"]).then(pl.lit("empty"))
    for st in chain.steps:
        reason = reason.when(~out[f"pass__{st.id}"]).then(pl.lit(st.id))
    got = out.select(reason.otherwise(pl.lit(None, pl.String)).alias("rule"))
    return df.with_columns(got["rule"])


def check_explain(run, df: pl.DataFrame, per_reason: int = 4) -> int:
    """explain() of a few rows of every reason (and kept rows) shows exactly the decision."""
    picked = df.filter(pl.int_range(pl.len()).over("reason") < per_reason)
    for row in picked.iter_rows(named=True):
        e = explain(row["sample_id"], run=run)
        assert e["decision"] == {"keep": row["keep"], "reason": row["reason"]}
        flags = [s["pass"] for s in e["scores"]]
        ids = [s["filter"] for s in e["scores"]]
        if row["keep"] or row["reason"] == "empty":
            assert all(flags) or row["reason"] == "empty", e["scores"]
        else:
            i = ids.index(row["reason"])
            assert flags[i] is False and all(flags[:i]), e["scores"]
    return picked.height


def test_decide_and_explain_agree_before_dedup(real_run):
    run = real_run / "run"
    chain = load_chain("default-dedup")
    df = reasons_by_rule(run, chain)
    assert df["score__neardup"].null_count() == df.height  # not computed yet: passes
    assert df["rule"].equals(df["reason"]) and df["keep"].equals(df["reason"].is_null())
    assert df["reason"].n_unique() >= 4
    n = check_explain(run, df)
    assert n >= 16
    e = explain(df.filter(pl.col("keep"))["sample_id"][0], run=run)
    neardup = next(s for s in e["scores"] if s["filter"] == "neardup")
    assert neardup["pass"] is True and neardup["score"] is None


def test_decide_explain_and_mixture_agree_after_dedup(real_run, tmp_path):
    run = real_run / "run"
    dedup(run, DedupOptions())
    chain = load_chain("default-dedup")
    decide_run(run, chain)
    df = reasons_by_rule(run, chain)
    assert (df["reason"] == "neardup").sum() >= 300
    assert df["rule"].equals(df["reason"])
    check_explain(run, df)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'size = 800\n[[source]]\nname = "all"\nrun = "{run}"\nshare = 1.0\n')
    build_mixture(recipe, tmp_path / "mix")
    picked = pl.read_parquet(tmp_path / "mix" / "manifest.parquet").select("sample_id", "row")
    joined = picked.join(df.select("sample_id", "keep"), on="sample_id")
    assert joined.height == picked.height and joined["keep"].all()
    dropped = df.filter(~pl.col("keep"))["sample_id"][0]
    e = explain(dropped, mix=tmp_path / "mix")
    assert e["mix"]["selected"] is False and "eligible" in e["mix"]["why"]
