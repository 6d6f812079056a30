"""Transforms that repair how a caption was encoded, not what it says: ``unicode``,
``html``, ``urls`` and ``whitespace``. The default chain applies ``unicode``, ``html`` and
``whitespace``: on a caption with nothing to repair they change nothing."""
from __future__ import annotations

import html as htmllib

import polars as pl

from curate.clean.base import Transform, expr_on, keep_if_emptied, on_rows

#: Characters that a UTF-8 continuation byte (0x80-0xBF) becomes when read as Latin-1 or
#: Windows-1252: C1 controls and U+00A0-U+00BF, and the 27 Windows-1252 letters and signs.
_CONT = (r"\x{80}-\x{BF}\x{152}\x{153}\x{160}\x{161}\x{178}\x{17D}\x{17E}\x{192}\x{2C6}\x{2DC}"
         r"\x{2013}\x{2014}\x{2018}-\x{201A}\x{201C}-\x{201E}\x{2020}-\x{2022}\x{2026}\x{2030}"
         r"\x{2039}\x{203A}\x{20AC}\x{2122}")
#: The rows ftfy can change (with :func:`ftfy_config`), tested on rows that are not plain
#: ASCII: a UTF-8 lead byte read as Latin-1/Windows-1252 (Â..ô) followed by a continuation
#: byte read the same way (mojibake: "Ã©", "â€™", "Ã¼"), C1 control characters and Latin
#: ligatures (ﬁ). Correct accented text rarely has such a pair ("íš" in Czech does, and
#: ftfy leaves it alone). ASCII control characters are the whitespace transform's.
MOJIBAKE_SCREEN = rf"[\x{{C2}}-\x{{F4}}][{_CONT}]|[\x{{80}}-\x{{9F}}\x{{FB00}}-\x{{FB06}}]"
#: Characters of which text that is not in Unicode normal form C has at least one:
#: combining marks and the singletons NFC replaces (Ohm, Kelvin, Angstrom signs, CJK
#: compatibility ideographs) and conjoining Hangul jamo.
NFC_SCREEN = r"[\p{M}\x{2126}\x{212A}\x{212B}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}\x{1100}-\x{11FF}]"


def ftfy_config():
    import ftfy

    # HTML is the html transform's job; curly quotes, full-width forms and line breaks
    # are not errors (full-width punctuation is correct Chinese); NFC is done in Polars;
    # ASCII control characters and escapes are left to the whitespace transform
    return ftfy.TextFixerConfig(unescape_html=False, uncurl_quotes=False, fix_character_width=False,
                                fix_line_breaks=False, remove_control_chars=False,
                                remove_terminal_escapes=False, normalization=None, explain=False)


class Unicode(Transform):
    """Mojibake and broken characters repaired with ftfy; text put in Unicode NFC.

    Rule: rows that are not plain ASCII and that :data:`MOJIBAKE_SCREEN` selects (a columnar
    regex; 0.2% of the development sample's captions) go through ``ftfy.fix_text`` one string at a time, with HTML unescaping,
    quote uncurling, width folding and line-break changes switched off; then rows that are
    not in NFC (screened by :data:`NFC_SCREEN`) are normalised by Polars. Source: ftfy
    (Speer 2019), as datatrove's and NeMo Curator's Unicode formatters use it.

        "StraÃŸe in MÃ¼nchen"              -> "Straße in München"
        "Itâ€™s a cafÃ© terrace"            -> "It’s a café terrace"
        "café terrace"  (already correct)  -> unchanged
        "cafe\\u0301"  (e + combining acute) -> "café"
    """

    name = "unicode"
    version = 1

    def apply(self, text: pl.Series) -> pl.Series:
        return on_rows(text, text.str.len_chars() != text.str.len_bytes(), self._fix)

    def _fix(self, text: pl.Series) -> pl.Series:
        out = on_rows(text, text.str.contains(MOJIBAKE_SCREEN), self._ftfy)
        return on_rows(out, out.str.contains(NFC_SCREEN), lambda s: s.str.normalize("NFC"))

    @staticmethod
    def _ftfy(text: pl.Series) -> pl.Series:
        import ftfy

        cfg = ftfy_config()
        # one library call per screened string: ftfy has no batch interface
        return pl.Series(text.name, [ftfy.fix_text(s, cfg) for s in text.to_list()], pl.String)


#: HTML tags (<em>, </span>, <br/>, <div class='x'>) and comments.
TAG = r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"
#: Inline tags: removed without a space ("<em>Go!</em>" -> "Go!"); other tags become a space.
INLINE = r"</?(?i:a|b|i|u|s|em|strong|span|font|small|big|sup|sub|abbr|cite|code|mark|q|nobr)(?:\s[^<>]*)?/?>"
#: Character references: &amp; &copy; &#34; &#x27;
ENTITY = r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"


class Html(Transform):
    """HTML character references decoded and tags removed; the visible text is kept.

    Rule: on rows with an entity (:data:`ENTITY`) or a tag (:data:`TAG`), entities are
    decoded (Python's ``html.unescape``, one call per such row) and then tags are removed,
    inline ones (:data:`INLINE`) without a space and others as a space; this repeats (at
    most 3 times) while a row still has one, so "&amp;quot;" ends as a quotation mark.

        "A cook makes a &#34;caldosa,&#34; (AP Photo&#47; J. Doe)" -> 'A cook makes a "caldosa," (AP Photo/ J. Doe)'
        "Game Review: <em>Bird Kart</em>"                         -> "Game Review: Bird Kart"
        "<div class='meta'><span>Boy throws a ball</span></div>"   -> "Boy throws a ball"
        "Fish & chips"                                            -> unchanged
    """

    name = "html"
    version = 1

    def apply(self, text: pl.Series) -> pl.Series:
        # one fast byte scan for "&" or "<", then the patterns on those rows only
        return on_rows(text, text.str.contains(r"[&<]"), self._decode)

    def _decode(self, text: pl.Series) -> pl.Series:
        out = text
        for _ in range(3):
            cand = out.str.contains(ENTITY) | out.str.contains(TAG)
            if not cand.any():
                break
            out = on_rows(out, cand, self._fix)
        return keep_if_emptied(text, out)

    @staticmethod
    def _fix(text: pl.Series) -> pl.Series:
        # html.unescape works on one string; it runs on the screened rows only
        dec = pl.Series(text.name, [htmllib.unescape(s) for s in text.to_list()], pl.String)
        t = pl.col("t")
        return expr_on(dec, t.str.replace_all(INLINE, "").str.replace_all(f"(?s){TAG}", " ")
                       .str.replace_all(r" {2,}", " ").str.strip_chars(" "))


#: A web address: http(s)://... or www....
URL = r"(?i)\b(?:https?://|www\.)[^\s<>\"'()\[\]]+"
#: What an address leaves behind at an end: separators and empty brackets.
DANGLING = r"^[\s|:;,\-–—/]+|[\s|:;,\-–—/]+$|\(\s*\)|\[\s*\]"


class Urls(Transform):
    """Web addresses removed.

    Rule: ``http://``, ``https://`` and ``www.`` addresses up to the next space or quote
    are removed, with the separators and empty brackets they leave at the ends; never when
    no letter would be left (a caption that is only an address stays for ``junk`` to drop).

        "Sunset over the bay https://example.org/p/123"   -> "Sunset over the bay"
        "Photo (www.example.com) of a red barn"           -> "Photo of a red barn"
    """

    name = "urls"
    version = 1

    def apply(self, text: pl.Series) -> pl.Series:
        cand = text.str.contains_any(["http://", "https://", "www."], ascii_case_insensitive=True)
        return on_rows(text, cand, self._fix)

    @staticmethod
    def _fix(text: pl.Series) -> pl.Series:
        t = pl.col("t")
        out = expr_on(text, t.str.replace_all(URL, "").str.replace_all(DANGLING, "")
                      .str.replace_all(r"([\s]) +", "$1").str.replace_all(r" ([,.;:!?])", "$1").str.strip_chars())
        return keep_if_emptied(text, out)


#: Rows whitespace changes: white space other than a plain space, a control or format
#: character, two spaces in a row, or a space at either end.
_UNNORMAL = r"[[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]--[ ]]|  |^ | $"
#: Format characters that carry meaning in words and stay: zero-width non-joiner and joiner.
_KEEP_CF = r"\x{200C}\x{200D}"


class Whitespace(Transform):
    """White space collapsed: what the filters' normalisation does, made permanent.

    Rule: line breaks, tabs, non-breaking and other Unicode spaces and control characters
    become one space; invisible format characters (zero-width space, soft hyphen, byte order
    mark, direction marks) are removed, except the zero-width (non-)joiners that Persian and
    Indic words need; runs of spaces become one; the ends are stripped.

        "  Two dogs\\n\\nplay in\\tthe snow. "  -> "Two dogs play in the snow."
        "A red\\u00a0car"   (no-break space)  -> "A red car"
        "sun\\u00adflowers" (soft hyphen)     -> "sunflowers"
        "A red car"                          -> unchanged
    """

    name = "whitespace"
    version = 1

    def apply(self, text: pl.Series) -> pl.Series:
        return on_rows(text, text.str.contains(_UNNORMAL), self._fix)

    @staticmethod
    def _fix(text: pl.Series) -> pl.Series:
        t = pl.col("t")
        return expr_on(text, t.str.replace_all(rf"[\p{{Cf}}--[{_KEEP_CF}]]", "")
                       .str.replace_all(r"[\s\p{Cc}\p{Zl}\p{Zp}]+", " ").str.strip_chars(" "))
