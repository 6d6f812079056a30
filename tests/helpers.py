"""What many test modules share: running the CLI in-process and checking its outcome.

Test modules import from here (``from helpers import invoke``), never from one another.
The mixture helpers score three real sources of ``../shared/data`` once per session.
"""
from __future__ import annotations

import json
import re
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import polars as pl
from click.testing import CliRunner

from curate.cli import cli
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions, score


def invoke(*args):
    """Run ``curate ARGS`` in this process (arguments may be paths or numbers)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args):
    """Run ``curate ARGS`` and assert it succeeded."""
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res


def one_line_error(res, pattern: str = "") -> str:
    """Assert a failed run printed one ``Error:`` line (matching ``pattern``); return it."""
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def fails_in_one_line(*args) -> str:
    """Run ``curate ARGS``, assert it failed with one line and no traceback; return the output."""
    return one_line_error(invoke(*args)) + "\n"


def point_aws_at(mp, endpoint: str) -> None:
    """The AWS environment of a test (``mp``: a pytest MonkeyPatch) pointed at the S3 server
    on ``endpoint``, with test credentials and no profile or config file of the machine."""
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        mp.delenv(k, raising=False)
    mp.setenv("AWS_ENDPOINT_URL", endpoint)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-value")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")


@contextmanager
def module_bucket(endpoint: str, name: str) -> Iterator[types.SimpleNamespace]:
    """A bucket on the S3 server at ``endpoint`` for a whole test module, the AWS environment
    pointed at it while the module runs; ``.url("key")`` -> ``s3://name/key``, ``.mp`` the
    module's MonkeyPatch (for more environment)."""
    import boto3
    import pytest

    from curate.storage.fs import clear_clients

    with pytest.MonkeyPatch.context() as mp:
        point_aws_at(mp, endpoint)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=name)
        clear_clients()
        yield types.SimpleNamespace(name=name, client=client, endpoint=endpoint, mp=mp,
                                    url=lambda key="": f"s3://{name}/{key}".rstrip("/"))
        clear_clients()


# -- mixtures over real runs ---------------------------------------------------------------

SOURCES = {"web": "c_", "human": "a_", "long": "d_"}


def make_runs(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    """Score the three real sources once per session (a run with run.json is reused)."""
    base = tmp_path_factory.getbasetemp() / "mix-runs"
    out = {}
    for name, prefix in SOURCES.items():
        run = base / name
        if not (run / "run.json").exists():
            files = sorted(str(p) for p in data_dir.glob(f"{prefix}*.parquet"))
            score(files, run, load_chain(None), ScoreOptions(carry=("group_id",)))
        out[name] = run
    return out


def toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def write_recipe(path: Path, runs: dict[str, Path], sources: dict[str, dict], caps: dict | None = None,
                 **top) -> Path:
    """A recipe file: ``sources`` maps a name to its keys (share, repeat, ...); runs by name."""
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    if caps:
        lines += ["[caps]"] + [f"{k} = {toml_value(v)}" for k, v in caps.items()]
    for name, keys in sources.items():
        keys = {"name": name, "run": str(runs.get(name, name)), **keys}
        lines += ["[[source]]"] + [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def manifest(mix: Path) -> pl.DataFrame:
    return pl.read_parquet(mix / "manifest.parquet")


def scores_of(runs: dict[str, Path]) -> pl.DataFrame:
    return pl.concat([
        pl.read_parquet(r / "scores" / "part-*.parquet").with_columns(pl.lit(name).alias("run"))
        for name, r in runs.items()
    ], how="diagonal_relaxed")


QUALITY = "ln(1 + score__specificity) * (1 - score__junk)"


def quality_expr() -> pl.Expr:
    return (1 + pl.col("score__specificity")).log() * (1 - pl.col("score__junk"))


def run_scores(inputs, out: Path, **opts) -> pl.DataFrame:
    """Score ``inputs`` with the default chain into ``out``; the run's rows by source and row."""
    score([str(p) for p in inputs], out, load_chain(None), ScoreOptions(**opts))
    return pl.read_parquet(out / "scores" / "*.parquet").sort("source", "row")


def local_ray(cpus: int = 2):
    """A local Ray with ``cpus`` CPUs for the tests (a generator for a fixture): skips
    without Ray, fails under CI (``make test`` installs the ``ray`` extra)."""
    import os

    import pytest

    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI"):
            pytest.fail(f"Ray is required under CI (make test installs curate[ray]): {e}")
        pytest.skip(f"Ray is not installed ({e}); pip install 'curate[ray]' to run the engine comparison")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=cpus, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def import_without_torchvision(monkeypatch, module: str, stand_ins: tuple[str, ...]):
    """Import ``module`` beside the CPU torch. PyPI's torchvision is built for a CUDA torch
    and fails to import here ("operator torchvision::nms does not exist"); open_clip_train.data
    imports ``torchvision.datasets`` at the top for ImageNet folders only, and ``streaming``
    imports its ``streaming.vision`` datasets (CIFAR, ImageNet) at the top. Neither is used by
    the pipeline under test, so those modules (``stand_ins``) are empty namespaces while
    ``module`` is imported, and only where torchvision itself cannot be imported."""
    try:
        import torchvision.datasets  # noqa: F401
    except Exception:
        for name in stand_ins:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        if "torchvision" in stand_ins:
            sys.modules["torchvision"].datasets = sys.modules["torchvision.datasets"]
    import pytest

    return pytest.importorskip(module)
