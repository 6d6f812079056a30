"""Transforms for captions written by vision-language models: ``preamble`` and
``markdown``. Both are in ``filters/synthetic.toml``; ``preamble`` is in the default chain
too (the labelling rubric counts a model opener as junk to strip: "This is a photo of" says
nothing a text-to-image model should learn), ``markdown`` is not."""
from __future__ import annotations

import polars as pl

from curate.clean.base import Transform, capitalise_like, expr_on, keep_if_emptied, on_rows

_NOUN = r"(?:image|picture|photo|photograph|pic|scene|shot|snapshot|illustration|painting|drawing|artwork|screenshot|frame)"
_VERB = (r"(?:shows|depicts|features|captures|displays|presents|showcases|portrays|illustrates|contains"
         r"|highlights|is showing|is depicting|show|depict|feature|capture|display|present|showcase|portray)")
_ARTICLE = r"(?:a|an|the|one|two|three|four|five|six|several|many|some|various|multiple|numerous)"
#: Model openers, anchored at the start (case-insensitive). Each removes the words before the
#: content; a group ``(?P<keep>...)`` is the first content word, put back.
OPENERS = [
    # "The image shows", "This picture depicts", "The photo appears to show"
    rf"(?:the|this) {_NOUN}(?: (?:appears|seems) to)? {_VERB}(?: us)?[ :,]+(?:what (?:appears|seems) to be |what looks like )?",
    # "The image is a close-up of ..." -> "A close-up of ...", "This image is of a toddler"
    rf"(?:the|this) {_NOUN} is (?:of )?(?P<keep>{_ARTICLE}\b)",
    # "In the image, a man ...", "In this picture, we see a dog", "In the image, there is a cat"
    rf"in (?:the|this) {_NOUN}(?: provided)?[,:]? (?:(?:we|you|one) (?:can )?see |there (?:is|are) (?P<keep>{_ARTICLE}\b))?",
    # "This is a photo of", "Here is an image showing"
    rf"(?:this|here) is (?:a|an) {_NOUN} (?:of|showing|that shows|depicting) ",
    # "Sure! Here is a detailed description of the image:"
    r"(?:(?:sure|certainly|of course)[!,.]? )?here(?:'s| is) (?:a |an |the )?(?:detailed |brief |short )?(?:description|caption)"
    rf"(?: of (?:the|this) {_NOUN})?[:.] ?",
]
_SCREEN = r"(?i)^[\s\"'“]*(?:the|this|in|here|sure|certainly|of course)\b"


class Preamble(Transform):
    """Model openers removed, so that the caption starts with its content.

    Rule: one opener of :data:`OPENERS` at the start of the caption (case-insensitive) is
    removed; the first remaining word gets a capital when the caption began with one and
    the word is all lower case. Not when what follows starts with "that", "how", "what" or
    "whether" (a clause, not a description), and never when no letter would be left.
    Nearly all model captions of the development sample open like this ("The image shows"
    alone opens 40% of GPT-4o/LLaVA captions): text-to-image training learns the opener as
    a constant token and the captions become alike.

        "The image shows a man in a red coat."           -> "A man in a red coat."
        "The image is a close-up of a sunflower."        -> "A close-up of a sunflower."
        "In this picture, we see two boats at dusk."     -> "Two boats at dusk."
        "In the image, there is a cat on a sofa."        -> "A cat on a sofa."
        "The image shows that the road is closed."       -> unchanged
        "A man in a red coat."                           -> unchanged
    """

    name = "preamble"
    version = 1

    def apply(self, text: pl.Series) -> pl.Series:
        return on_rows(text, text.str.contains(_SCREEN), self._fix)

    @staticmethod
    def _fix(text: pl.Series) -> pl.Series:
        t = pl.col("t")
        out = text
        for pat in OPENERS:
            rep = "${keep}" if "(?P<keep>" in pat else ""
            out = expr_on(out, t.str.replace(rf"(?i)^[\s\"'“]*{pat}", rep))
        out = expr_on(out, t.str.strip_chars_start(" ,:;-"))
        clause = out.str.contains(r"(?i)^(?:that|how|what|whether)\b")
        out = pl.DataFrame({"o": out, "b": text}).select(pl.when(clause).then("b").otherwise("o")).to_series()
        return keep_if_emptied(text, capitalise_like(text, out.alias(text.name)))


#: Markdown that models write: bold (**x**, __x__), headings (# x), bullets (- x, * x, • x)
#: and numbered items (1. x) at the start of a line.
MARKDOWN = r"\*\*|__\S|(?m:^[ \t]*(?:#{1,6}[ \t]|[-*•+][ \t]+\S|[0-9]{1,2}[.)][ \t]+\S))"


class Markdown(Transform):
    """Markdown turned into plain sentences.

    Rule: on rows with markdown (:data:`MARKDOWN`), bold markers are removed, heading marks
    and bullet or number marks at the start of a line are removed, every line that does not
    end in punctuation gets a full stop, and the lines are joined with a space.

        "A kitchen.\\n\\n**Objects:**\\n- A red kettle\\n- Two mugs"
            -> "A kitchen. Objects: A red kettle. Two mugs"
        "## Scene\\n1. **Sky:** clear and blue\\n2. **Ground:** wet sand"
            -> "Scene. Sky: clear and blue. Ground: wet sand"
        "A dog - brown, small - on a mat"                -> unchanged
    """

    name = "markdown"
    version = 1

    def apply(self, text: pl.Series) -> pl.Series:
        return on_rows(text, text.str.contains(MARKDOWN), self._fix)

    @staticmethod
    def _fix(text: pl.Series) -> pl.Series:
        t = pl.col("t")
        out = expr_on(text, (
            t.str.replace_all(r"\*\*|__", "")
            .str.replace_all(r"(?m)^[ \t]*#{1,6}[ \t]+", "")
            .str.replace_all(r"(?m)^[ \t]*(?:[-*•+]|[0-9]{1,2}[.)])[ \t]+", "")
            .str.replace_all(r"(?m)[ \t]*#+[ \t]*$", "")
            .str.replace_all(r"([^\s.!?:;,…])[ \t]*\r?\n", "$1.\n")
            .str.replace_all(r"[ \t]*\r?\n[\s]*", " ")
            .str.strip_chars()
        ))
        return keep_if_emptied(text, out)
