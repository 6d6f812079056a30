"""How fast language ID could be without the fastText library: a measurement, not product code.

fastText's batched call (``multilinePredict``) is the largest single cost of ``curate
score``. This script applies the same model file's forward pass with numpy and polars
instead, and prints, on the benchmark input, the agreement with fastText (labels and
probabilities) and the CPU time of both. The package keeps calling fastText: replacing its
inference is a decision for the project (the model would still be fastText's; its
inference would be ours), and this script gives the numbers for it.

    python benchmarks/lid_forward.py --rows 100000

The forward pass of a supervised fastText model, as fastText computes it:

* tokens: the line split at ASCII white space, then the end-of-line token ``</s>``;
* each token's input rows: its vocabulary row (if listed) and the rows of its character
  n-grams of ``minn``..``maxn`` characters of ``<token>``, hashed with 32-bit FNV-1a over
  sign-extended bytes into ``bucket`` buckets (in a quantized model only the buckets kept by
  pruning have rows); the hidden vector is the mean of all rows of all tokens;
* hierarchical softmax (``lid.176``): a Huffman tree over the labels, built from their
  training counts; a leaf's score is the sum along its path of ``log(f + 1e-5)`` (right
  child) or ``log(1 - f + 1e-5)`` (left), ``f`` the sigmoid of the node's output row times
  the hidden vector. The top label is found as fastText finds it, by a search that prunes
  any node that cannot beat the best leaf found, here for all lines at once: a greedy
  descent gives each line a lower bound, then every node that can still reach it is
  expanded, level by level.

Token vectors are computed once per distinct token of the batch. Supported: quantized
(``.ftz``) and dense (``.bin``) models with hierarchical softmax and word n-grams of 1
(``lid.176``); others are refused with a message.
"""
from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_input  # noqa: E402

FT_MAGIC = 793712314
KSUB = 256  # centroids per sub-quantizer (8-bit codes)
EOS = "</s>"
LABEL = "__label__"
HS = 1  # fastText's loss_name::hs


class _Reader:
    def __init__(self, data: bytes):
        self.b, self.o = data, 0

    def take(self, fmt: str):
        v = struct.unpack_from(fmt, self.b, self.o)
        self.o += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        a = np.frombuffer(self.b, dtype=dtype, count=count, offset=self.o)
        self.o += a.nbytes
        return a

    def cstr(self) -> bytes:
        end = self.b.index(b"\0", self.o)
        s, self.o = self.b[self.o:end], end + 1
        return s


def _pq(r: _Reader) -> tuple:
    dim, nsubq, dsub, lastdsub = r.take("<4i")
    return dim, nsubq, dsub, lastdsub, r.array("<f4", dim * KSUB)


def _decode(codes: np.ndarray, pq: tuple) -> np.ndarray:
    """Rows of a product-quantized matrix, decoded (fastText's ProductQuantizer layout)."""
    dim, nsubq, dsub, lastdsub, c = pq
    out = np.empty((codes.shape[0], dim), dtype=np.float32)
    for q in range(nsubq):  # a loop over sub-quantizers (8 for lid.176), not rows
        d = lastdsub if q == nsubq - 1 else dsub
        table = c[q * KSUB * dsub: q * KSUB * dsub + KSUB * d].reshape(KSUB, d)
        out[:, q * dsub: q * dsub + d] = table[codes[:, q]]
    return out


def _matrix(r: _Reader, quant: bool) -> np.ndarray:
    if not quant:
        m, n = r.take("<qq")
        return r.array("<f4", m * n).reshape(m, n)
    qnorm = r.take("<?")
    m, _n = r.take("<qq")
    codes = r.array("u1", r.take("<i"))
    mat = _decode(codes.reshape(m, -1), _pq(r))
    if qnorm:
        norm_codes = r.array("u1", m)
        norms = _pq(r)[4][:KSUB]  # one dimension, one sub-quantizer
        mat *= norms[norm_codes][:, None]
    return mat


class ForwardPass:
    """A supervised fastText model file, applied with numpy."""

    def __init__(self, path: str):
        r = _Reader(Path(path).read_bytes())
        magic, _version = r.take("<ii")
        if magic != FT_MAGIC:
            sys.exit(f"{path}: not a fastText model")
        (self.dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, _model, self.bucket,
         self.minn, self.maxn, _lr_update, _t) = r.take("<12id")
        if loss != HS or word_ngrams != 1:
            sys.exit(f"{path}: only hierarchical softmax with word n-grams of 1 is implemented here")
        size, nwords, nlabels = r.take("<3i")
        _ntokens, prune_size = r.take("<qq")
        entries = [(r.cstr(), r.take("<q"), r.take("<b")) for _ in range(size)]
        prune = r.array("<i4", 2 * max(prune_size, 0)).reshape(-1, 2)
        quant = r.take("<?")
        self.wi = _matrix(r, quant)
        qout = r.take("<?")
        self.wo = _matrix(r, quant and qout)
        self.nwords = nwords
        if prune_size >= 0:  # bucket -> input row; -1 where pruning dropped the bucket
            self.bucket_row = np.full(self.bucket, -1, dtype=np.int64)
            self.bucket_row[prune[:, 0]] = nwords + prune[:, 1]
        else:
            self.bucket_row = nwords + np.arange(self.bucket, dtype=np.int64)
        words = [w.decode("utf-8", "replace") for w, _, _ in entries[:nwords]]
        self.vocab = pl.DataFrame({"w": words}).with_row_index("wid")
        self.eos = words.index(EOS)
        self.labels = pl.Series([w.decode("utf-8", "replace").removeprefix(LABEL) for w, _, _ in entries[nwords:]])
        self._tree(np.array([c for _, c, _ in entries[nwords:]], dtype=np.int64))

    def _tree(self, counts: np.ndarray) -> None:
        """fastText's HierarchicalSoftmaxLoss::buildTree (labels sorted by count)."""
        osz = len(counts)
        n = 2 * osz - 1
        left, right, parent = (np.full(n, -1, dtype=np.int64) for _ in range(3))
        count = np.full(n, 10**15, dtype=np.int64)
        count[:osz] = counts
        leaf, node = osz - 1, osz
        for i in range(osz, n):  # 175 merges, at load
            pair = []
            for _ in range(2):
                if leaf >= 0 and count[leaf] < count[node]:
                    pair.append(leaf)
                    leaf -= 1
                else:
                    pair.append(node)
                    node += 1
            left[i], right[i] = pair
            count[i] = count[pair[0]] + count[pair[1]]
            parent[pair] = i
        depth = np.zeros(n, dtype=np.int64)
        for i in range(n - 2, -1, -1):  # parents have larger indices than their children
            depth[i] = depth[parent[i]] + 1
        self.osz, self.root, self.left, self.right = osz, n - 1, left, right
        # a leaf below a node scores at most depth * log(1 + 1e-5) above it
        self.slack = np.float32(int(depth.max()) * 1.01e-5)

    # -- features ---------------------------------------------------------------------------

    def _token_rows(self, toks: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(token index, input row) pairs: vocabulary rows and character n-gram rows."""
        arr = ("<" + toks + ">").cast(pl.Binary).to_arrow()
        import pyarrow as pa

        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_binary())
        _, offsets, data = arr.buffers()
        start = np.frombuffer(offsets, dtype=np.int64, count=len(arr) + 1 + arr.offset)[arr.offset:]
        buf = np.frombuffer(data, dtype=np.uint8)
        ntok = len(arr)
        is_start = (buf[: start[-1]] & 0xC0) != 0x80  # UTF-8 character starts
        chars = np.flatnonzero(is_start)
        nchars = np.add.reduceat(is_start.astype(np.int64), start[:-1])
        tok = np.repeat(np.arange(ntok), nchars)
        first = np.zeros(ntok + 1, dtype=np.int64)
        np.cumsum(nchars, out=first[1:])
        pos = np.arange(len(chars)) - first[tok]
        ends = np.append(chars, 0)
        g_tok, g_start, g_len = [], [], []
        for n in range(self.minn, self.maxn + 1):  # n-gram lengths, not rows
            ok = pos + n <= nchars[tok]
            if n == 1:
                ok &= (pos != 0) & (pos + 1 != nchars[tok])
            i = np.flatnonzero(ok)
            end = np.where(pos[i] + n == nchars[tok[i]], start[tok[i] + 1], ends[np.minimum(i + n, len(chars))])
            g_tok.append(tok[i])
            g_start.append(chars[i])
            g_len.append(end - chars[i])
        gt, gs, gl = (np.concatenate(x) for x in (g_tok, g_start, g_len))
        h = np.full(len(gs), 2166136261, dtype=np.uint32)
        signed = buf.view(np.int8).astype(np.int32).view(np.uint32)  # int8 -> uint32, as fastText
        for j in range(int(gl.max()) if len(gl) else 0):  # byte offsets within an n-gram (<= 16)
            m = gl > j
            h[m] = (h[m] ^ signed[gs[m] + j]) * np.uint32(16777619)
        rows = self.bucket_row[(h % np.uint32(self.bucket)).astype(np.int64)]
        kept = rows >= 0
        wid = toks.to_frame("w").join(self.vocab, on="w", how="left", maintain_order="left")["wid"]
        listed = wid.is_not_null().to_numpy()
        return (np.concatenate([gt[kept], np.flatnonzero(listed)]),
                np.concatenate([rows[kept], wid.drop_nulls().to_numpy().astype(np.int64)]))

    def hidden(self, lines: pl.Series) -> np.ndarray:
        """Mean input vector of each line (its tokens and the end-of-line token)."""
        from scipy.sparse import csr_matrix

        toks = lines.str.split(" ")
        line = np.repeat(np.arange(len(lines)), toks.list.len().to_numpy())
        w = toks.explode()
        ok = ((w != "") & ~w.str.starts_with(LABEL)).fill_null(False)
        w, line = w.filter(ok), line[ok.to_numpy()]
        _, first, code = np.unique(w.hash(7).to_numpy(), return_index=True, return_inverse=True)
        t, rows = self._token_rows(w.gather(first))
        ndistinct = len(first)
        sums = csr_matrix((np.ones(len(t)), (t, rows)), shape=(ndistinct, len(self.wi))) @ self.wi
        nrows = np.bincount(t, minlength=ndistinct)
        indptr = np.zeros(len(lines) + 1, dtype=np.int64)
        np.cumsum(np.bincount(line, minlength=len(lines)), out=indptr[1:])
        per_line = csr_matrix((np.ones(len(code)), code.ravel(), indptr), shape=(len(lines), ndistinct))
        total = per_line @ sums + self.wi[self.eos]
        n = per_line @ nrows.astype(np.float64) + 1
        return (total / n[:, None]).astype(np.float32)

    # -- output layer -----------------------------------------------------------------------

    def _terms(self, h: np.ndarray, line: np.ndarray, node: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dot = np.einsum("ij,ij->i", h[line], self.wo[node - self.osz])
        f = np.float32(1.0) / (np.float32(1.0) + np.exp(-np.clip(dot, -40.0, 40.0)))
        return np.log(np.float32(1.0) - f + np.float32(1e-5)), np.log(f + np.float32(1e-5))

    def predict(self, lines: pl.Series) -> tuple[pl.Series, np.ndarray]:
        """Top label and its probability for lines that are already lower-cased and cut."""
        h = self.hidden(lines)
        n, osz = len(lines), self.osz
        node = np.full(n, self.root)
        bound = np.zeros(n, dtype=np.float32)
        while (idx := np.flatnonzero(node >= osz)).size:  # greedy descent: a lower bound
            tl, tr = self._terms(h, idx, node[idx])
            go = tr > tl
            bound[idx] += np.where(go, tr, tl)
            node[idx] = np.where(go, self.right[node[idx]], self.left[node[idx]])
        line, node, score = np.arange(n), np.full(n, self.root), np.zeros(n, dtype=np.float32)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        while line.size:  # one tree level per step: keep the nodes that can reach the bound
            leaf = node < osz
            found.append((line[leaf], node[leaf], score[leaf]))
            line, node, score = line[~leaf], node[~leaf], score[~leaf]
            if not line.size:
                break
            tl, tr = self._terms(h, line, node)
            line, node, score = (np.concatenate([line, line]), np.concatenate([self.left[node], self.right[node]]),
                                 np.concatenate([score + tl, score + tr]))
            keep = score + self.slack >= bound[line]
            line, node, score = line[keep], node[keep], score[keep]
        fl, fn, fs = (np.concatenate(x) for x in zip(*found))
        order = np.lexsort((-fs, fl))
        best = order[np.flatnonzero(np.r_[True, fl[order][1:] != fl[order][:-1]])]
        return self.labels.gather(fn[best]), np.exp(fs[best])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="captions (default 100,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions of each (default 3)")
    args = ap.parse_args()

    from curate.scoring.filters.language import (
        LID_CHARS,
        bundled_lid_model,
        load_fasttext,
        predict_top1,
    )
    from curate.scoring.frame import normalised

    folder = make_input(args.rows)
    captions = pl.read_parquet(folder / "*.parquet")["caption"]
    text = normalised(captions).str.slice(0, LID_CHARS).str.to_lowercase()
    lines = (text + "\n").to_list()
    path = str(bundled_lid_model())
    t0 = time.process_time()
    fwd = ForwardPass(path)
    t_load = time.process_time() - t0
    model = load_fasttext(path)
    ours, p_ours = fwd.predict(text)
    theirs, p_theirs = predict_top1(model, lines)
    agree = float((ours == theirs).mean())
    dp = float(np.abs(p_ours - p_theirs.to_numpy()).max())
    times: dict[str, list[float]] = {"fastText multilinePredict": [], "numpy forward pass": []}
    for _ in range(args.repeat):
        t0 = time.process_time()
        predict_top1(model, lines)
        t1 = time.process_time()
        fwd.predict(text)
        t2 = time.process_time()
        times["fastText multilinePredict"].append(t1 - t0)
        times["numpy forward pass"].append(t2 - t1)
    print(f"{len(lines):,} captions ({folder.name}), first {LID_CHARS} characters, lower-cased; "
          f"model {Path(path).name} read in {t_load:.2f} CPU-s")
    print(f"labels identical on {agree:.4%} of captions; largest probability difference {dp:.1e}")
    for name, ts in times.items():
        best = min(ts)
        print(f"  {name:28s} {best:.2f} CPU-s (best of {len(ts)}; all: {', '.join(f'{t:.2f}' for t in ts)}) "
              f"= {len(lines) / best:,.0f} captions per CPU-second")


if __name__ == "__main__":
    main()
