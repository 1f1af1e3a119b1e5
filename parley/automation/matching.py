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
FUZZY_TWO_EDITS_FROM = 16


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

    def _candidates(self, message: str) -> list[tuple[tuple[int, int, int, int, int], MatchKind]]:
        """Every (order, kind) found, unsorted; objects are only built for the few that are looked at."""
        text = normalize(message)
        if not text:
            return []
        found: list[tuple[tuple[int, int, int, int, int], MatchKind]] = []
        entries = self._entries
        for index in self._exact.get(text, ()):
            kind = MatchKind.exact if entries[index][1] is MatchKind.exact else MatchKind.fuzzy
            found.append(((-len(text), _RANK[kind], 0, -entries[index][3], index), kind))
        if self._has_contains:
            rank = _RANK[MatchKind.contains]
            for _end, (length, indexes) in self._automaton.iter(text):
                for index in indexes:
                    found.append(((-length, rank, 0, -entries[index][3], index), MatchKind.contains))
        n = len(text)
        rank = _RANK[MatchKind.fuzzy]
        for length in range(max(FUZZY_MIN_LENGTH, n - 2), n + 3):
            bucket = self._fuzzy.get(length)
            if bucket is None:
                continue
            limit = 2 if length >= FUZZY_TWO_EDITS_FROM else 1
            if abs(length - n) > limit:
                continue
            choices, indexes = bucket
            for _choice, edits, position in process.extract(
                text, choices, scorer=Levenshtein.distance, score_cutoff=limit, limit=None
            ):
                for index in indexes[position]:
                    found.append(((-length, rank, int(edits), -entries[index][3], index), MatchKind.fuzzy))
        return found

    def _match(self, order: tuple[int, int, int, int, int], kind: MatchKind) -> Match[T]:
        text, _, target, _priority = self._entries[order[4]]
        return Match(target=target, keyword=text, kind=kind, length=-order[0], edits=order[2], order=order)

    def match(self, message: str, *, accept: Callable[[T], bool] | None = None) -> list[Match[T]]:
        """Every rule the message matches (best first, one entry per keyword)."""
        seen: set[int] = set()
        out: list[Match[T]] = []
        for order, kind in sorted(self._candidates(message)):
            if order[4] in seen:
                continue
            seen.add(order[4])
            candidate = self._match(order, kind)
            if accept is None or accept(candidate.target):
                out.append(candidate)
        return out

    def best(self, message: str, *, accept: Callable[[T], bool] | None = None) -> Match[T] | None:
        """The winner: candidates are checked against ``accept`` (time windows) in order, first one wins."""
        candidates = self._candidates(message)
        if not candidates:
            return None
        candidates.sort()
        rejected: set[int] = set()
        for order, kind in candidates:
            target = self._entries[order[4]][2]
            if accept is not None:
                if order[4] in rejected:
                    continue
                if not accept(target):
                    rejected.add(order[4])
                    continue
            return self._match(order, kind)
        return None


def compile_keywords(rules: Sequence[tuple[T, int, Iterable[tuple[str, str]]]]) -> Matcher[T]:
    """A matcher over ``(target, priority, [(keyword, kind), ...])`` triples."""
    return Matcher(
        Keyword(text=text, kind=MatchKind(kind), target=target, priority=priority)
        for target, priority, keywords in rules
        for text, kind in keywords
    )
