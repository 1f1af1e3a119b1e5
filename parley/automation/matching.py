"""The keyword matcher: exact, contains and fuzzy keywords of every rule evaluated together.

One compiled :class:`Matcher` per account holds

* a dict for exact keywords (the whole message equals the keyword),
* an Aho-Corasick automaton (pyahocorasick) for contains keywords, so a
  message is scanned once whatever the number of rules,
* fuzzy keywords bucketed by length, compared with rapidfuzz's Levenshtein
  distance only against the buckets a one- or two-edit typo could reach.

The longest keyword wins; at equal length exact beats contains beats fuzzy,
fewer edits beat more, then the rule's priority, then its position.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import ahocorasick
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

T = TypeVar("T")


class MatchKind(StrEnum):
    exact = "exact"
    contains = "contains"
    fuzzy = "fuzzy"


_RANK = {MatchKind.exact: 0, MatchKind.contains: 1, MatchKind.fuzzy: 2}
_SPACE = re.compile(r"\s+")
# Punctuation around a short message ("退款？", "hi!") should not defeat an exact rule.
_EDGE_PUNCT = "!?.,;:~·。！？，；：、…\"'“”‘’()（）[]【】"

# Shorter keywords are too close to other words to forgive a typo: "退款" and "退货"
# differ by one character and mean different things.
FUZZY_MIN_LENGTH = 4
FUZZY_TWO_EDITS_FROM = 10


def normalize(text: str) -> str:
    """Full-width to half-width, case-folded, spaces collapsed, edge punctuation dropped."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", folded).strip().strip(_EDGE_PUNCT).strip()


def allowed_edits(keyword: str) -> int:
    if len(keyword) >= FUZZY_TWO_EDITS_FROM:
        return 2
    if len(keyword) >= FUZZY_MIN_LENGTH:
        return 1
    return 0


@dataclass(frozen=True)
class Keyword(Generic[T]):
    text: str
    kind: MatchKind
    target: T
    priority: int = 0


@dataclass(frozen=True)
class Match(Generic[T]):
    target: T
    keyword: str
    kind: MatchKind
    length: int
    edits: int
    order: tuple[int, int, int, int, int]


class Matcher(Generic[T]):
    """Compiled keywords; :meth:`match` returns every candidate, best first, or :meth:`best`."""

    def __init__(self, keywords: Iterable[Keyword[T]]) -> None:
        self._entries: list[tuple[str, MatchKind, T, int]] = []
        self._exact: dict[str, list[int]] = {}
        self._automaton = ahocorasick.Automaton()
        contains: dict[str, list[int]] = {}
        fuzzy: dict[int, dict[str, list[int]]] = {}
        for keyword in keywords:
            text = normalize(keyword.text)
            if not text:
                continue
            index = len(self._entries)
            self._entries.append((text, keyword.kind, keyword.target, keyword.priority))
            if keyword.kind is MatchKind.exact:
                self._exact.setdefault(text, []).append(index)
            elif keyword.kind is MatchKind.contains:
                contains.setdefault(text, []).append(index)
            else:
                # A fuzzy keyword also matches exactly; edits only widen it.
                self._exact.setdefault(text, []).append(index)
                if allowed_edits(text):
                    fuzzy.setdefault(len(text), {}).setdefault(text, []).append(index)
        for text, indexes in contains.items():
            self._automaton.add_word(text, (len(text), indexes))
        self._has_contains = bool(contains)
        if self._has_contains:
            self._automaton.make_automaton()
        self._fuzzy: dict[int, tuple[list[str], list[list[int]]]] = {
            length: (list(by_text), list(by_text.values())) for length, by_text in fuzzy.items()
        }
        self.size = len(self._entries)

    def _candidate(self, index: int, length: int, edits: int, kind: MatchKind) -> Match[T]:
        text, _, target, priority = self._entries[index]
        return Match(
            target=target,
            keyword=text,
            kind=kind,
            length=length,
            edits=edits,
            order=(-length, _RANK[kind], edits, -priority, index),
        )

    def match(self, message: str, *, accept: Callable[[T], bool] | None = None) -> list[Match[T]]:
        text = normalize(message)
        if not text:
            return []
        found: dict[int, Match[T]] = {}

        def keep(candidate: Match[T], index: int) -> None:
            if accept is not None and not accept(candidate.target):
                return
            current = found.get(index)
            if current is None or candidate.order < current.order:
                found[index] = candidate

        for index in self._exact.get(text, ()):
            kind = MatchKind.exact if self._entries[index][1] is MatchKind.exact else MatchKind.fuzzy
            keep(self._candidate(index, len(text), 0, kind), index)
        if self._has_contains:
            for _end, (length, indexes) in self._automaton.iter(text):
                for index in indexes:
                    keep(self._candidate(index, length, 0, MatchKind.contains), index)
        self._fuzzy_matches(text, keep)
        return sorted(found.values(), key=lambda m: m.order)

    def _fuzzy_matches(self, text: str, keep: Callable[[Match[T], int], None]) -> None:
        n = len(text)
        for length in range(max(FUZZY_MIN_LENGTH, n - 2), n + 3):
            bucket = self._fuzzy.get(length)
            if bucket is None:
                continue
            limit = 2 if length >= FUZZY_TWO_EDITS_FROM else 1
            if abs(length - n) > limit:
                continue
            choices, indexes = bucket
            for _choice, edits, position in process.extract_iter(
                text, choices, scorer=Levenshtein.distance, score_cutoff=limit
            ):
                for index in indexes[position]:
                    keep(self._candidate(index, length, int(edits), MatchKind.fuzzy), index)

    def best(self, message: str, *, accept: Callable[[T], bool] | None = None) -> Match[T] | None:
        matches = self.match(message, accept=accept)
        return matches[0] if matches else None


def compile_keywords(rules: Sequence[tuple[T, int, Iterable[tuple[str, str]]]]) -> Matcher[T]:
    """A matcher over ``(target, priority, [(keyword, kind), ...])`` triples."""
    return Matcher(
        Keyword(text=text, kind=MatchKind(kind), target=target, priority=priority)
        for target, priority, keywords in rules
        for text, kind in keywords
    )
