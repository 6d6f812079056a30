"""Near copies of real captions for the near-duplicate tests: the kinds of edit web
captions carry (case, punctuation, white space, a swapped or dropped word, stock-photo
affixes), made deterministically from a seed."""
from __future__ import annotations

import random

PREFIXES = ["Stock Photo - ", "Stock Image: ", "Royalty Free Stock Photo: ", "stock photo of ", "Shutterstock: "]
SUFFIXES = [" - royalty free image", " stock photo", " | Shutterstock", " - Stock Image",
            " Royalty Free Stock Photography", " — Stock Photo #4823991"]
KINDS = ["case", "punct", "space", "swap", "drop", "prefix", "suffix"]


def _light(rng: random.Random, t: str, kind: str) -> str:
    if kind == "case":
        return rng.choice([t.upper(), t.lower(), t.title(), t[:1].swapcase() + t[1:]])
    if kind == "punct":
        bare = t.rstrip(".!?")
        if bare != t:
            return bare
        return rng.choice([t + ".", t + "!", t.replace(" ", ", ", 1), '"' + t + '"'])
    ws = t.split(" ")  # space
    i = rng.randrange(len(ws))
    ws[i] += rng.choice([" ", "  ", "\t"])
    return rng.choice(["  ", " ", ""]) + " ".join(ws) + rng.choice([" ", "  ", ""])


def near_copy(rng: random.Random, t: str, kind: str) -> str | None:
    """One edit of ``kind``; swap and drop follow EDA's "random swap" (two words trade
    places) and "random deletion" of one word (Wei & Zou 2019); None when not applicable."""
    ws = t.split()
    if kind in ("case", "punct", "space"):
        return _light(rng, t, kind)
    if kind == "swap":
        if len(ws) < 2:
            return None
        i, j = rng.sample(range(len(ws)), 2)
        ws[i], ws[j] = ws[j], ws[i]
        return " ".join(ws)
    if kind == "drop":
        if len(ws) < 4:
            return None
        del ws[rng.randrange(len(ws))]
        return " ".join(ws)
    if kind == "prefix":
        return rng.choice(PREFIXES) + t
    return t.rstrip(".") + rng.choice(SUFFIXES)


def near_copies(captions: list[str], n: int, seed: int) -> list[tuple[int, str, str]]:
    """(index of the original, copy, kind) for ``n`` captions of 3+ words: the kinds in
    turn, and half of the copies get a second, light edit (case, punctuation or space)."""
    rng = random.Random(seed)
    order = list(range(len(captions)))
    rng.shuffle(order)
    out: list[tuple[int, str, str]] = []
    for i in order:
        if len(out) >= n:
            break
        t = captions[i]
        if not t or len(t.split()) < 3:
            continue
        kind = KINDS[len(out) % len(KINDS)]
        c = near_copy(rng, t, kind)
        if c is None or c == t:
            continue
        if rng.random() < 0.5:
            c = _light(rng, c, rng.choice(["case", "punct", "space"]))
        out.append((i, c, kind))
    return out
