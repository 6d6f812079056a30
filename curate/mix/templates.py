"""Template signatures of captions, for a whole batch of normalised captions at once.

**Template signature**: the caption's first sentence, normalised, with every word that is
neither an English function word nor a framing word ("image", "shows", "depicts",
"photo", ...) replaced by ``_``, runs of ``_`` made one, cut to 8 tokens: "The image shows
a man riding a horse." becomes ``the image shows a _ a _``. Model captions that open
alike share it; null when the first sentence has no words.

The first sentence is what precedes the first ``.``, ``!`` or ``?`` after any leading white
space; its words are its pieces between single spaces (empty ones dropped). Computed from
the tokens of :class:`curate.mix.wordmatch.Tokens`, the words looked up as a vocabulary of
their own.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from curate.mix.vocabulary import STOPWORDS, patterns
from curate.mix.wordmatch import Matcher, Tokens, lists_of

TEMPLATE_WORDS = 8
#: Words that frame a description rather than describe: kept in a template signature.
FRAMING = frozenset("""
image images picture pictures photo photos photograph photographs shot snapshot scene scenes view
close-up closeup portrait illustration drawing painting render rendering frame
shows show showing shown depicts depict depicting depicted features feature featuring captures
capture capturing captured showcases showcase displays display displaying presents present
illustrates appears appear seems seen visible there's it's here's
background foreground center centre middle left right side front top bottom corner
""".split())
KEEP_IN_TEMPLATE = sorted(STOPWORDS | FRAMING | set(",;:"))
_KEEP = Matcher(patterns(KEEP_IN_TEMPLATE))
_BLANK = len(_KEEP.entries)
_WORDS = pl.concat([_KEEP.entries, pl.Series(["_"])])
SENTENCE_END = np.frombuffer(b".!?", dtype=np.uint8)
#: first bytes of the characters other than the space that are white space (and a few more):
#: a row whose first word starts with one has its leading white space stripped first
SPACE_LIKE = np.array([*range(0x09, 0x0E), *range(0x1C, 0x20), 0xC2, 0xE1, 0xE2, 0xE3], dtype=np.uint8)


def templates(tok: Tokens) -> pl.Series:
    """The template signature of each row of ``tok`` (module docstring)."""
    sig, odd = _signatures(tok)
    if len(odd):  # rows that open with other white space: without it, as the rule reads them
        text = pl.select(pl.concat_str([pl.lit(" "), tok.text.gather(odd).str.strip_chars_start()])).to_series()
        sig = sig.scatter(odd, _signatures(Tokens(text))[0])
    return sig


def _signatures(tok: Tokens) -> tuple[pl.Series, np.ndarray]:
    """The signatures, and the rows whose first word starts with a byte of :data:`SPACE_LIKE`."""
    n = len(tok.first)
    one = np.flatnonzero(tok.length == 1)
    char = tok.pad[tok.start[one]]
    end = np.append(one[(char == SENTENCE_END[0]) | (char == SENTENCE_END[1]) | (char == SENTENCE_END[2])],
                    len(tok.start))
    count = np.minimum(end[np.searchsorted(end, tok.first)], tok.stop) - tok.first
    # the first sentence's tokens of every row, in order; empty ones dropped
    at = np.arange(int(count.sum())) + np.repeat(tok.first - (np.cumsum(count) - count), count)
    row = np.repeat(np.arange(n), count)
    full = tok.length[at] > 0
    at, row = at[full], row[full]
    head = np.searchsorted(row, np.arange(n))  # each row's first word, where it has one
    has = head < len(row)
    has[has] = row[head[has]] == np.arange(n)[has]
    odd = np.flatnonzero(has)[np.isin(tok.pad[tok.start[at[head[has]]]], SPACE_LIKE)]
    wid = _KEEP.word_ids(tok, at)
    word = np.where(wid >= 0, _KEEP.entry[np.maximum(wid, 0)], _BLANK)
    blank = word == _BLANK
    again = np.zeros(len(word), dtype=bool)
    again[1:] = blank[1:] & blank[:-1] & (row[1:] == row[:-1])
    word, row = word[~again], row[~again]
    count = np.bincount(row, minlength=n)
    keep = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count) < TEMPLATE_WORDS
    sig = lists_of(_WORDS.gather(word[keep]), np.minimum(count, TEMPLATE_WORDS)).list.join(" ")
    return pl.select(pl.when(sig != "").then(sig)).to_series(), odd
