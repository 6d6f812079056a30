"""Specificity's word classes and constants: closed English vocabularies (after Visual
Genome's attribute and relationship categories), the token pattern and the weights.
Every constant was chosen on one half of the development images (split by group_id) and
its validity reported on the other half (``benchmarks/validate_specificity.py``)."""
from __future__ import annotations

#: the filter's version: what its scores mean (also part of the word tables' cache names)
VERSION = 3

# -- closed English word classes ---------------------------------------------------------
# Colour, material, size/shape and count vocabulary after the attribute categories of
# Visual Genome; spatial relations after its relationship predicates. Each class word earns
# ATTRIBUTE_BONUS on top of its rarity.
COLOURS = """red orange yellow green blue purple pink brown black white gray grey silver gold golden
beige tan maroon navy teal turquoise violet crimson cream ivory bronze copper striped spotted
plaid checkered dark light bright pale colorful colourful multicolored""".split()
MATERIALS = """wooden wood metal metallic plastic glass stone brick concrete leather cotton wool
denim paper cardboard ceramic marble steel iron rubber fabric silk straw wicker tiled""".split()
SIZES = """small large big tiny huge tall short long wide narrow thin thick little giant
round square rectangular circular curved flat empty full""".split()
#: exact counts only: "three" says more than "several" (vague quantifiers are in VAGUE)
COUNTS = """one two three four five six seven eight nine ten eleven twelve twenty dozen pair
both single double triple twin twins half""".split()
#: one-word relations. "top", "front", "next" and "side" are left out: they mostly occur in
#: stock phrases ("on top of", "in front of", "next to") and keep only their rarity.
SPATIAL = """near beside behind under underneath below above between inside outside across along
against around atop beneath opposite toward towards left right center centre middle corner
background foreground edge""".split()
#: words that announce text visible in the image
TEXT_WORDS = """says reads saying lettering inscription logo labeled labelled written writing
text words letters sign signs banner""".split()
ATTRIBUTES = COLOURS + MATERIALS + SIZES + COUNTS + SPATIAL + TEXT_WORDS

#: English words that carry no content in a caption (weight 0, however rare): vague
#: quantifiers ("a group of", "a couple of"), the existential verbs of stock captions ("a
#: bench sitting in a park") and words about the picture rather than what is in it.
VAGUE = """group groups couple bunch bunches lot lots number variety several many few some
various assorted assortment kind kinds type types sort sorts array plenty numerous multiple""".split()
FILLER = """sitting standing sits stands sit stand laying lying lays lies located seen shown
displayed pictured depicted featuring features there""".split()
PICTURE = """picture pictures photo photos photograph photographs image images pic pics shot
shots view views closeup close up scene snapshot stock""".split()
NO_CONTENT = VAGUE + FILLER + PICTURE
#: evaluative or empty words: they make a caption generic, and each costs GENERIC_PENALTY
GENERIC = """beautiful nice amazing awesome cool lovely stunning great gorgeous cute perfect best
wonderful fantastic incredible epic adorable pretty something stuff thing things someone
somebody object objects item items""".split()
#: the writer or the reader, not the picture: first- and second-person pronouns (a title
#: like "my new bike", an advert like "treat your family"); each costs GENERIC_PENALTY
#: and none counts as a function word
PERSONAL = """i me my mine myself we us our ours you your yours yourself""".split()
#: English derivational suffixes that make abstract nouns ("celebration", "happiness",
#: "quality", "tourism", "experience"): such a word weighs at most ABSTRACT_WEIGHT, however
#: rare. A few concrete nouns share the endings; they are listed as exceptions.
ABSTRACT = r"(?:tion|sion|ness|ity|ism|ship|hood|ance|ence|ment)s?$"
CONCRETE_EXCEPTIONS = """station stations intersection apartment apartments equipment pavement
monument monuments instrument instruments ornament ornaments basement garment garments
compartment fence fences""".split()

ZIPF_ZERO = 7.0  # weight = 7 - zipf: "the", "of", "a" (zipf above 7) carry nothing
MAX_WORD_WEIGHT = 4.0  # words of zipf 3 and below (one per million words or rarer)
ATTRIBUTE_BONUS = 1.0  # about one more content word
GENERIC_PENALTY = 1.5
ABSTRACT_WEIGHT = 1.0
UNKNOWN_WEIGHT = 4.0  # a lower-case word rarer than the list goes
NAME_WEIGHT = 1.0  # a capitalised word inside a sentence (a name, a brand, Title Case)
NUMBER_WEIGHT = 1.5  # a number of one or two digits: a count
NO_TABLE_WEIGHT = 1.0  # per word, in a language wordfreq has no list for
TEXT_BONUS = 2.0  # the caption quotes text seen in the image
#: the most frequent words of each list are its function words (articles, prepositions,
#: pronouns, auxiliaries): the glue of a sentence, which keyword lists and titles lack
FUNCTION_RANK = 150
#: a caption whose share of function words is at least this fraction of the share they
#: have in the language's running text (the sum of their wordfreq frequencies: en 0.46,
#: de 0.49, fr 0.56, cs 0.38, ar 0.30) reads as a sentence and gets the whole of its word
#: weights ...
SENTENCE_FRACTION = 0.9
#: ... the share estimated with this many pseudo-words at that level, so that a two-word
#: caption is not judged on its two words alone
PRIOR_WORDS = 3.0
#: a share of capitalised words inside the sentence up to this is a description naming
#: things ("the Eiffel Tower at night"); above it the caption reads as a title
NAME_SHARE = 0.4
#: what a caption with no sentence structure at all keeps of its word weights
FLOOR = 0.1
#: languages that capitalise every noun: a capital letter there says nothing of a name
NOUN_CAPITALS = frozenset({"de", "lb"})
SCALE = 1000  # weights are summed as integer thousandths
#: look tokens between spaces up as they stand (False: split every token into parts, the
#: slow way; the result is the same, which a test checks)
FAST_PATH = True

#: token kinds, packed into the low bits of a table value (see ``_pack``)
CONTENT, FUNCTION, STOP, SEPARATOR, NUMBER, CODE, UNKNOWN, CJK, EMPTY = range(9)
KIND_BITS = 4  # kind
END_BITS = 2  # what a token between spaces ends with: 0, STOP or SEPARATOR
CAP_BITS = 1  # 1: the token is written capitalised ("Dog")
FLAG_BITS = KIND_BITS + END_BITS + CAP_BITS
#: a word said again within this many weighted words adds nothing (keyword stuffing repeats its
#: terms close together; a long description that comes back to an object does so later)
REPEAT_WINDOW = 6

#: language labels (fastText's) -> wordfreq's code, where they differ
ALIASES = {"no": "nb", "tl": "fil", "hr": "sh", "sr": "sh", "bs": "sh"}
HAN = r"\p{Han}"
KANA = r"\p{Hiragana}\p{Katakana}ー"
#: how a token between spaces that the table lacks is split: numbers with a decimal
#: point (a measurement or a price, like a code), runs of Han characters, of hiragana, of
#: katakana, of other letters, marks and digits; sentence ends and list
#: separators (a dash only where it stands alone between spaces, as a token of its own)
TOKEN = (r"\p{N}+(?:[.,:]\p{N}+)+"  # a decimal, a time, thousands: "1.7", "10:30", "1,000"
         rf"|[{HAN}]+|\p{{Hiragana}}+|[\p{{Katakana}}ー]+|[\p{{L}}\p{{M}}\p{{N}}--{HAN}{KANA}]+"
         r"|[.!?:;,|/•·…]|^[-–—]$")
STOPS = [".", "!", "?", ":", "...", "…"]
#: lone tokens that are neither words nor list separators (found in the table as they
#: stand; quotation marks are left out, so that quoted text is always looked at)
NON_WORDS = ["&", "'s", "’s", "--", "#", "+", "*", "(", ")"]
NUMBERS_LISTED = 2100  # numbers in digits from 0 up to this are in the table
SEPARATORS = [",", ";", "|", "/", "•", "·", "-", "–", "—"]
QUOTES = ['"', "“", "”", "«", "»", "「", "」"]
QUOTED = r"\"[^\"]{1,80}\"|“[^”]{1,80}”|«[^»]{1,80}»|「[^」]{1,80}」"
HASH_SEED = 0x5EED
