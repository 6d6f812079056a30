"""A run whose inputs are objects on S3 (a real S3 API server on loopback): ``curate verify``
finds them by their URL, trusts an unchanged ETag and lists the rows of an object replaced
since; ``curate explain`` reads the sample's row back from the object."""
from __future__ import annotations

import gzip
import json

import polars as pl
from helpers import invoke, manifest, write_recipe

from curate.audit.explain import explain
from curate.audit.verify import verify
from curate.mix.build import build_mixture
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions, score


def test_verify_and_explain_read_the_inputs_back_from_s3(s3, read_data, tmp_path):
    coco = read_data("a_coco", ["caption", "image_id"]).head(600)
    lines = coco.write_ndjson().splitlines()
    s3.client.put_object(Bucket=s3.name, Key="in/coco.jsonl.gz", Body=gzip.compress(("\n".join(lines) + "\n").encode()))
    url = s3.url("in/coco.jsonl.gz")
    run = tmp_path / "run"
    score([url], run, load_chain(None), ScoreOptions())
    mix = tmp_path / "mix"
    build_mixture(write_recipe(tmp_path / "r.toml", {"c": run}, {"c": {}}, size=200, seed=1), mix)
    v = verify(mix)
    assert v["ok"] and v["files"][0]["path"] == url and v["files"][0]["status"] == "intact (fingerprint)"

    picked = manifest(mix).sort("row").row(0, named=True)
    e = explain(picked["sample_id"], mix=mix)
    assert e["origin"]["file"] == url and e["origin"]["now"]["same"]
    assert e["origin"]["now"]["caption"] == json.loads(lines[picked["row"]])["caption"]

    changed = json.loads(lines[picked["row"]])
    changed["caption"] = changed["caption"].upper() + " (edited)"
    lines[picked["row"]] = json.dumps(changed)
    s3.client.put_object(Bucket=s3.name, Key="in/coco.jsonl.gz", Body=gzip.compress(("\n".join(lines) + "\n").encode()))
    v = verify(mix)
    assert not v["ok"] and not v["files"][0]["fingerprint_matches"]  # the ETag moved
    assert [(c["source"], c["row"], c["problem"]) for c in v["changes"]] == [(url, picked["row"], "caption changed")]
    res = invoke("verify", mix)
    assert res.exit_code == 1 and url in res.output and "Traceback" not in res.output
    e = explain(picked["sample_id"], mix=mix)
    assert not e["origin"]["now"]["same"] and e["origin"]["now"]["caption"] == changed["caption"]
    res = invoke("explain", picked["sample_id"], "--mix", mix)
    assert res.exit_code == 0 and "(edited)" in res.output

    s3.client.delete_object(Bucket=s3.name, Key="in/coco.jsonl.gz")
    v = verify(mix)
    assert not v["ok"] and "file not found" in v["changes"][0]["problem"]
    assert pl.DataFrame(v["files"])["status"].to_list() == ["missing"]
