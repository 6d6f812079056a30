"""Which entries of a vocabulary each normalised caption of a batch holds, found as word
sequences over the whole batch at once (MetaCLIP's substring rule, no scan per entry).

A normalised caption (:func:`curate.mix.vocabulary.normalise`) starts and ends with a space,
and so does an entry's pattern ``" w1 w2 ... wn "`` (its words hold no space; runs of spaces
in an entry were made one). Cut the caption at every space: the pieces between two spaces
are its tokens (empty where two spaces meet, and no word of an entry is empty). The pattern
is a substring of the caption exactly when tokens ``w1 ... wn`` stand one after another in
it, so "red car" matches " a red car . " and not " a red  car " (two spaces).

The batch is one byte buffer, cut at its spaces with NumPy. Each token is hashed (64 bits,
from its bytes eight at a time) and looked up in a :class:`Table` of the vocabulary's words;
a token found there is compared with the word byte for byte, so its word id is exact.
The entries form a trie of word ids: a one-word entry is read off its word id; a longer one
is found by extending, one word at a time, only the positions where a prefix of some entry
stands (the key ``prefix * words + word``, an exact integer, looked up in a second table).
No Python loop runs over rows or tokens (one over the words of the longest entry).

A pattern without a space on a side (an entry that starts or ends in a character of a script
written without spaces) matches inside a token: those few are found by Aho-Corasick (Polars'
``str.extract_many``) in the rows holding a character of three or more UTF-8 bytes, as every
such script's are.
"""
from __future__ import annotations

import ctypes

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_S32 = np.uint64(32)
_S56 = np.uint64(56)
_TOP = np.uint64(0xFF << 56)
#: MASK[r]: the low r bytes of a 64-bit word (r = 0..8)
_MASK = np.array([(1 << (8 * r)) - 1 for r in range(8)] + [2**64 - 1], dtype=np.uint64)
SPACE = 0x20
#: a UTF-8 byte that starts a character of three or four bytes (U+0800 and above)
WIDE = 0xE0


def keep_freed_memory() -> None:
    """Have glibc's malloc keep memory that is freed for the next allocation (blocks of up to
    32 MiB from its heap, which it no longer trims) rather than hand it back to the system:
    matching allocates arrays of tens of MiB for every batch, and each fresh page costs a page
    fault (about a fifth of the matching time on a busy machine). Nothing without glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD (its largest value)
    mallopt(-1, 2**30)  # M_TRIM_THRESHOLD


def batch_bytes(text: pl.Series) -> tuple[np.ndarray, int, np.ndarray]:
    """The UTF-8 bytes of every row one after another, followed by 8 zero bytes (so that a
    word of 8 bytes can be read at any position), their length, and the rows' offsets."""
    arr = text.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    offs = np.zeros(1, np.int64)
    data = np.zeros(0, np.uint8)
    if n:
        _, offsets, buf = arr.buffers()
        offs = np.frombuffer(offsets, np.int64)[arr.offset: arr.offset + n + 1]
        if buf is not None:
            data = np.frombuffer(buf, np.uint8)[int(offs[0]): int(offs[-1])]
        offs = offs - offs[0]
    pad = np.zeros(len(data) + 8, np.uint8)
    pad[:len(data)] = data
    return pad, len(data), offs


def lists_of(values: pl.Series, counts: np.ndarray) -> pl.Series:
    """Lists of the flat ``values`` (in row order), ``counts[i]`` of them in row i."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), values.rechunk().to_arrow()))


def _words64(pad: np.ndarray) -> np.ndarray:
    """The little-endian 64-bit word at every byte position of ``pad`` (a view)."""
    return np.ndarray(shape=(len(pad) - 7,), dtype="<u8", buffer=pad, strides=(1,))


def _mix(x: np.ndarray) -> np.ndarray:
    x *= _K1
    x ^= x >> _S32
    return x


def cut(pad: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of every token: the bytes between two consecutive spaces."""
    sp = np.flatnonzero(pad[:size] == SPACE).astype(np.int32 if size < 2**31 else np.int64)
    return sp[:-1] + 1, np.diff(sp) - 1


def token_keys(pad: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """A 64-bit key of each token: a token of at most 7 bytes is its bytes and its length
    (exact: two such tokens differ exactly when their keys do); a longer one is a hash of
    its length, first 8 and last 8 bytes with every bit of the top byte set (two tokens of
    one key may differ: compare a match's bytes)."""
    words = _words64(pad)
    short = np.minimum(length, 7)
    key = words[start] & _MASK[short]
    key |= short.astype(np.uint64) << _S56
    rest = np.flatnonzero(length > 7)
    if len(rest):
        at, n = start[rest], length[rest]
        h = _mix(words[at] ^ (n.astype(np.uint64) * _K2))
        key[rest] = _mix(h ^ words[at + n - 8]) | _TOP
    return key


def same_bytes(pad: np.ndarray, start: np.ndarray, other: np.ndarray, ostart: np.ndarray,
               length: np.ndarray) -> np.ndarray:
    """Whether ``pad[start:start+length]`` equals ``other[ostart:ostart+length]``, per item."""
    a, b = _words64(pad), _words64(other)
    ok = np.ones(len(start), dtype=bool)
    todo = np.arange(len(start))
    k = 0
    while len(todo):
        left = length[todo] - k
        m = _MASK[np.minimum(left, 8)]
        bad = (a[start[todo] + k] & m) != (b[ostart[todo] + k] & m)
        ok[todo[bad]] = False
        todo = todo[~bad & (left > 8)]
        k += 8
    return ok


class Tokens:
    """The tokens of a batch of normalised texts: its bytes (:func:`batch_bytes`), each token's
    start, length and key (:func:`token_keys`), and each row's first token (a row's tokens run
    to the next row's first; the last of them is the empty one between the two rows)."""

    def __init__(self, text: pl.Series):
        self.text = text
        self.pad, self.size, self.offs = batch_bytes(text)
        self.start, self.length = cut(self.pad, self.size)
        self.key = token_keys(self.pad, self.start, self.length)
        self.first = np.searchsorted(self.start, self.offs[:-1] + 1)
        self.stop = np.append(self.first[1:], len(self.start)).astype(self.first.dtype)

    def rows(self) -> np.ndarray:
        """The row of each token."""
        return np.repeat(np.arange(len(self.first), dtype=np.uint32), self.stop - self.first)


class Table:
    """An exact map of distinct 64-bit keys to integers, looked up for a whole array of keys
    at once: each key has a slot of its own (top bits of key times an odd constant, about
    eight slots a key); the keys that share a slot are in a table of their own, with
    another constant, and so on."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, level: int = 0):
        keys = np.asarray(keys, dtype=np.uint64)
        if level > 16:
            raise CurateError("cannot index the vocabulary (its keys are not distinct)")
        bits = max(6, (8 * len(keys)).bit_length())
        self.mult = np.uint64((0x9E3779B97F4A7C15 + 2 * 0x632BE59BD9B4E019 * level) % 2**64 | 1)
        self.shift = np.uint64(64 - bits)
        slot = self._slot(keys)
        counts = np.bincount(slot, minlength=1 << bits)
        alone = counts[slot] == 1
        self.slots = np.where(counts > 1, -2, -1).astype(np.int32)
        self.slots[slot[alone]] = np.arange(int(alone.sum()), dtype=np.int32)
        self.keys, self.values = keys[alone], np.asarray(values, dtype=np.int32)[alone]
        self.rest = None if alone.all() else Table(keys[~alone], np.asarray(values)[~alone], level + 1)

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * self.mult) >> self.shift).astype(np.intp)

    def get(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key; -1 for a key not in the table."""
        c = self.slots[self._slot(keys)]
        out = np.full(len(keys), -1, dtype=np.int32)
        i = np.flatnonzero(c >= 0)
        ci = c[i]
        ok = self.keys[ci] == keys[i]
        out[i[ok]] = self.values[ci[ok]]
        if self.rest is not None:
            j = np.flatnonzero(c == -2)
            out[j] = self.rest.get(keys[j])
        return out


class Matcher:
    """One list of patterns (as :func:`curate.mix.vocabulary.patterns` gives them), indexed
    for :meth:`keys`; entry ids are positions in that list."""

    def __init__(self, pats: list[str]):
        self.entries = pl.Series([p.strip(" ") for p in pats], dtype=pl.String)
        spaced = [i for i, p in enumerate(pats) if len(p) > 2 and p[0] == " " and p[-1] == " "]
        self.inside = [(i, p) for i, p in enumerate(pats) if not (len(p) > 2 and p[0] == " " and p[-1] == " ")]
        ids: dict[str, int] = {}
        seqs = [[ids.setdefault(w, len(ids)) for w in pats[i][1:-1].split(" ")] for i in spaced]
        words = list(ids)
        self.n_words = len(words)
        # the words, each with a space on either side, as a batch of one row
        tok = Tokens(pl.Series([f" {' '.join(words)} " if words else ""], dtype=pl.String))
        self.wpad, self.wstart, self.wlen, keys = tok.pad, tok.start, tok.length, tok.key
        # the words of one key (only long words share one): the table has the first, each the next
        order = np.argsort(keys, kind="stable")
        ks = keys[order]
        new = np.ones(len(ks), dtype=bool)
        new[1:] = ks[1:] != ks[:-1]
        self.next_same = np.full(len(words), -1, dtype=np.int32)
        self.next_same[order[:-1][~new[1:]]] = order[1:][~new[1:]]
        self.words = Table(ks[new], order[new])
        # the trie: nodes 0..words-1 are the one-word prefixes; deeper ones are numbered on
        child: dict[tuple[int, int], int] = {}
        ends: dict[int, int] = {}
        for entry, seq in zip(spaced, seqs):
            node = seq[0]
            for w in seq[1:]:
                node = child.setdefault((node, w), self.n_words + len(child))
            ends[node] = entry
        nodes = self.n_words + len(child)
        self.entry = np.full(nodes, -1, dtype=np.int32)
        self.entry[list(ends)] = list(ends.values())
        self.more = np.zeros(nodes, dtype=bool)
        self.more[[p for p, _ in child]] = True
        keys = np.array([p * self.n_words + w for p, w in child], dtype=np.uint64)
        self.steps = Table(keys, np.array(list(child.values()), dtype=np.int64))

    def word_ids(self, tok: Tokens, at: np.ndarray | None = None) -> np.ndarray:
        """The word id of each token of ``tok`` (of the tokens ``at``), exact; -1 for a token
        that is no word of an entry."""
        at = np.arange(len(tok.start)) if at is None else at
        wid = self.words.get(tok.key[at])
        i = np.flatnonzero((wid >= 0) & (tok.length[at] > 7))  # found by a hash: compare the bytes
        w = wid[i]
        wid[i] = -1
        while len(i):
            length = tok.length[at[i]]
            ok = self.wlen[w] == length
            ok[ok] = same_bytes(tok.pad, tok.start[at[i[ok]]], self.wpad, self.wstart[w[ok]], length[ok])
            wid[i[ok]] = w[ok]
            i, w = i[~ok], self.next_same[w[~ok]]
            i, w = i[w >= 0], w[w >= 0]
        return wid

    def keys(self, tok: Tokens) -> np.ndarray:
        """``row << 32 | entry`` of every (row, entry) match in the batch; unsorted, with
        repeats."""
        found = [self._inside(tok)]
        n_tok = len(tok.start)
        if n_tok == 0 or self.n_words == 0:
            return np.concatenate(found)
        wid = self.word_ids(tok)
        row_of = tok.rows()
        pos = np.flatnonzero(wid >= 0)
        node = wid[pos]
        depth = 1
        while True:
            e = self.entry[node]
            hit = e >= 0
            found.append((row_of[pos[hit]].astype(np.uint64) << _S32) | e[hit].astype(np.uint64))
            go = self.more[node]
            pos, node = pos[go], node[go]
            nxt = pos + depth
            ok = nxt < n_tok
            pos, node, nxt = pos[ok], node[ok], nxt[ok]
            w = wid[nxt]
            ok = w >= 0
            pos, node = pos[ok], self.steps.get(node[ok].astype(np.uint64) * np.uint64(self.n_words)
                                                + w[ok].astype(np.uint64))
            ok = node >= 0
            pos, node = pos[ok], node[ok]
            if not len(pos):
                return np.concatenate(found)
            depth += 1

    def _inside(self, tok: Tokens) -> np.ndarray:
        """Keys of the patterns without a space on a side (Aho-Corasick), in the rows that can
        hold them."""
        if not self.inside:
            return np.zeros(0, dtype=np.uint64)
        rows = np.unique(np.searchsorted(tok.offs, np.flatnonzero(tok.pad[:tok.size] >= WIDE), side="right") - 1)
        if not len(rows):
            return np.zeros(0, dtype=np.uint64)
        pats = [p for _, p in self.inside]
        got = tok.text.gather(rows).str.extract_many(pats, overlapping=True)
        lens = got.list.len().fill_null(0).to_numpy()
        at = np.repeat(rows.astype(np.uint64), lens)
        rank = got.explode().drop_nulls().replace_strict(pats, [i for i, _ in self.inside], return_dtype=pl.UInt64)
        return (at << _S32) | rank.to_numpy()
