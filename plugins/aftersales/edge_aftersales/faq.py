"""FAQ entries: validation and matching a buyer's question against a room's FAQ.

Matching is deterministic token overlap, no model:

- **Tokens.** Text is case-folded and split into words (``\\w+``); common
  English stop words are dropped and plurals folded (``boxes`` → ``box``,
  ``sizes`` → ``size``, ``batteries`` → ``battery``). Runs of CJK characters
  become overlapping character pairs (``尺码偏小`` → ``尺码 码偏 偏小``), so
  Chinese, Japanese and Korean questions match without a dictionary.
- **Keyword hit** ``K``: 1 when at least one of the entry's keywords appears in
  the question (every token of a multi-word keyword), else 0.
- **Overlap** ``D``: the Dice coefficient of the question's tokens and the tokens
  of the entry's own question, ``2·|A∩B| / (|A|+|B|)``.
- **Score** = ``0.6·K + 0.4·D``, plus 0.1 when the question names the entry's SKU
  (an entry for another SKU is never a match), capped at 1.

The best-scoring entry answers when its score is at least the threshold
(``faq_threshold``, default 0.3): a keyword hit alone always answers; without
one, the question must share at least three quarters of its words with the
entry's question (D ≥ 0.75). Ties go to the entry with a SKU match, then to the
oldest entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

KEYWORD_WEIGHT = 0.6
OVERLAP_WEIGHT = 0.4
SKU_BONUS = 0.1
MAX_KEYWORDS = 20
MAX_KEYWORD = 64
MAX_QUESTION = 300
MAX_CLIP_SECONDS = 7 * 86400
SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

STOP_WORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being am
    do does did doing have has had having i me my mine you your yours we our us it its this that
    these those there here he she they them his her their what which who whom how when where why
    can could should would will shall may might must not no yes so than then too very just also
    about into over under up down out off again any some all each more most other such only own
    same s t don doesn didn isn aren wasn weren won wouldn shouldn couldn please hi hello thanks
    thank get got""".split()
)

_WORD = re.compile(r"\w+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


class FaqError(ValueError):
    """An invalid FAQ entry; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _fold(word: str) -> str:
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zzes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> frozenset[str]:
    """The comparable tokens of ``text``."""
    folded = text.casefold()
    out: set[str] = set()
    for run in _CJK.findall(folded):
        if len(run) == 1:
            out.add(run)
        else:
            out.update(run[i : i + 2] for i in range(len(run) - 1))
    for word in _WORD.findall(_CJK.sub(" ", folded)):
        if word not in STOP_WORDS and not word.startswith("_"):
            out.add(_fold(word))
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Faq:
    faq_id: int
    room: str
    question: str
    answer: str
    keywords: tuple[str, ...]
    sku: str | None
    clip_at_seconds: float | None
    created_at: float
    updated_at: float

    def view(self) -> dict[str, Any]:
        return {
            "faq_id": self.faq_id,
            "room": self.room,
            "question": self.question,
            "answer": self.answer,
            "keywords": list(self.keywords),
            "sku": self.sku,
            "clip_at_seconds": self.clip_at_seconds,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Match:
    faq: Faq
    score: float


FIELDS = ("question", "answer", "keywords", "sku", "clip_at_seconds")


def _text(body: Mapping[str, Any], key: str, limit: int) -> str:
    value = body[key]
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise FaqError(key, f"must be a non-empty string of at most {limit} characters")
    return value.strip()


def check_entry(body: Any, max_text: int, *, partial: bool = False) -> dict[str, Any]:
    """The columns of a FAQ entry from a request body (all of them, or the given ones)."""
    if not isinstance(body, dict):
        raise FaqError("body", "must be a JSON object")
    unknown = set(body) - set(FIELDS)
    if unknown:
        raise FaqError(sorted(unknown)[0], f"unknown field (known: {', '.join(FIELDS)})")
    if not partial:
        for key in ("question", "answer"):
            if key not in body:
                raise FaqError(key, "is required")
    out: dict[str, Any] = {}
    if "question" in body:
        out["question"] = _text(body, "question", MAX_QUESTION)
    if "answer" in body:
        out["answer"] = _text(body, "answer", max_text)
    if "keywords" in body:
        words = body["keywords"]
        if (
            not isinstance(words, list)
            or len(words) > MAX_KEYWORDS
            or not all(isinstance(w, str) and w.strip() and len(w) <= MAX_KEYWORD for w in words)
        ):
            raise FaqError("keywords", f"must be a list of at most {MAX_KEYWORDS} strings of 1-{MAX_KEYWORD} characters")
        if any(not tokens(w) for w in words):
            raise FaqError("keywords", "a keyword made only of stop words or punctuation never matches")
        out["keywords"] = tuple(dict.fromkeys(w.strip() for w in words))
    elif not partial:
        out["keywords"] = ()
    if "sku" in body:
        sku = body["sku"]
        if sku is not None and (not isinstance(sku, str) or not SKU.fullmatch(sku)):
            raise FaqError("sku", "must be null or 1-64 letters, digits, '_', '.', ':' or '-'")
        out["sku"] = sku
    elif not partial:
        out["sku"] = None
    if "clip_at_seconds" in body:
        at = body["clip_at_seconds"]
        if at is not None and (
            isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at <= MAX_CLIP_SECONDS
        ):
            raise FaqError("clip_at_seconds", f"must be null or a number of seconds from 0 to {MAX_CLIP_SECONDS}")
        out["clip_at_seconds"] = None if at is None else float(at)
    elif not partial:
        out["clip_at_seconds"] = None
    return out


def score(faq: Faq, asked: frozenset[str], sku: str | None) -> float:
    """How well a question (its tokens ``asked``) matches ``faq`` (0-1; -1: another SKU)."""
    if sku is not None and faq.sku is not None and sku.casefold() != faq.sku.casefold():
        return -1.0
    hit = any((kw := tokens(k)) and kw <= asked for k in faq.keywords)
    own = tokens(faq.question)
    overlap = 2 * len(asked & own) / (len(asked) + len(own)) if asked and own else 0.0
    value = KEYWORD_WEIGHT * hit + OVERLAP_WEIGHT * overlap
    if sku is not None and faq.sku is not None:
        value += SKU_BONUS
    return round(min(1.0, value), 4)


def best_match(entries: Iterable[Faq], text: str, sku: str | None, threshold: float) -> Match | None:
    """The entry that answers ``text``, or None when none scores ``threshold``."""
    asked = tokens(text)
    if not asked:
        return None
    best: tuple[float, int, int] | None = None
    chosen: Faq | None = None
    for faq in entries:
        value = score(faq, asked, sku)
        if value < threshold:
            continue
        key = (value, 1 if sku is not None and faq.sku is not None else 0, -faq.faq_id)
        if best is None or key > best:
            best, chosen = key, faq
    return None if chosen is None or best is None else Match(chosen, best[0])
