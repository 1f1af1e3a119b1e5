"""The knowledge base: articles in several languages, searched with Chinese word segmentation (jieba) and BM25.

One in-memory index per process, rebuilt when the articles change (count and
newest ``updated_at``, read from the database, so every node notices an edit).
Confidence is the best BM25 score normalised by the query's own best possible
score, so it reads the same whatever the size of the knowledge base.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jieba
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.exceptions import NotFound
from parley.kit.config_cache import ConfigCache
from parley.kit.types import utcnow
from parley.models import AppSetting, KbArticle, KbCategory

jieba.setLogLevel(60)
_INIT_LOCK = threading.Lock()
_WORD = re.compile(r"\w", re.UNICODE)

# Words that carry no meaning for retrieval; customers' questions are full of them.
STOPWORDS = frozenset(
    [
        "的",
        "了",
        "吗",
        "呢",
        "吧",
        "啊",
        "我",
        "你",
        "您",
        "是",
        "在",
        "有",
        "和",
        "就",
        "都",
        "也",
        "要",
        "想",
        "请问",
        "请",
        "怎么",
        "如何",
        "什么",
        "可以",
        "能",
        "一下",
        "这个",
        "那个",
        "a",
        "an",
        "the",
        "is",
        "are",
        "am",
        "do",
        "does",
        "did",
        "i",
        "you",
        "my",
        "your",
        "me",
        "we",
        "to",
        "of",
        "in",
        "on",
        "for",
        "how",
        "what",
        "can",
        "could",
        "please",
        "it",
    ]
)

BOT_SETTING = "automation.kb_bot"
DEFAULT_BOT = {"enabled": False, "min_confidence": 0.6}


def warm() -> None:
    """Loads jieba's dictionary (about 1.5 s) before a webhook needs it."""
    with _INIT_LOCK:
        jieba.initialize()


async def has_articles(ctx: Any) -> bool:
    from parley.db import session_scope

    async with session_scope(ctx.sessionmaker, write=False) as session:
        return await session.scalar(select(KbArticle.id).limit(1)) is not None


def tokens(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKC", text).casefold()
    warm()
    return [
        t
        for t in (w.strip() for w in jieba.cut_for_search(folded))
        if t and _WORD.search(t) and t not in STOPWORDS
    ]


@dataclass(frozen=True)
class Hit:
    article_id: uuid.UUID
    title: str
    answer: str
    language: str
    score: float
    confidence: float


class BM25:
    """Okapi BM25 with Lucene's always-positive idf.

    rank_bm25's Okapi idf goes negative for a word in more than half the articles,
    which on a small knowledge base (one article about maintenance) hides the very
    article that answers; Lucene's ``ln(1 + (N - n + .5) / (n + .5))`` does not.
    """

    k1 = 1.2
    b = 0.75

    def __init__(self, docs: list[list[str]]) -> None:
        self.freqs = [Counter(d) for d in docs]
        self.lengths = [len(d) for d in docs]
        self.avgdl = (sum(self.lengths) / len(docs)) if docs else 0.0
        df: Counter[str] = Counter()
        for f in self.freqs:
            df.update(f.keys())
        n = len(docs)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}

    def scores(self, words: list[str]) -> list[float]:
        out = [0.0] * len(self.freqs)
        for word in set(words):
            idf = self.idf.get(word)
            if idf is None:
                continue
            for i, f in enumerate(self.freqs):
                tf = f.get(word)
                if tf:
                    norm = 1 - self.b + self.b * self.lengths[i] / (self.avgdl or 1)
                    out[i] += idf * tf * (self.k1 + 1) / (tf + self.k1 * norm)
        return out

    def ceiling(self, words: list[str]) -> float:
        """What a typical article holding each word once would score: confidence 1.0."""
        return sum(self.idf.get(w, 0.0) for w in set(words)) or 1.0


@dataclass
class _Index:
    stamp: tuple[Any, ...]
    articles: list[tuple[uuid.UUID, str, str, str]]  # id, title, answer, language
    bm25: BM25 | None


_INDEX: _Index | None = None


async def _stamp(session: AsyncSession) -> tuple[Any, ...]:
    row = (await session.execute(select(func.count(KbArticle.id), func.max(KbArticle.updated_at)))).one()
    return (int(row[0]), row[1])


async def _index(session: AsyncSession) -> _Index:
    global _INDEX
    stamp = await _stamp(session)
    if _INDEX is not None and _INDEX.stamp == stamp:
        return _INDEX
    rows = (await session.scalars(select(KbArticle).where(KbArticle.is_published.is_(True)))).all()
    articles, docs = [], []
    for row in rows:
        # The title counts twice: it is what the article is about.
        docs.append(tokens(f"{row.title} {row.title} {' '.join(row.keywords or [])} {row.body}"))
        articles.append((row.id, row.title, row.answer or row.body, row.language))
    _INDEX = _Index(stamp=stamp, articles=articles, bm25=BM25(docs) if docs else None)
    return _INDEX


async def search(
    session: AsyncSession, query: str, *, language: str | None = None, limit: int = 5
) -> list[Hit]:
    index = await _index(session)
    words = tokens(query)
    if index.bm25 is None or not words:
        return []
    scores = index.bm25.scores(words)
    ceiling = index.bm25.ceiling(words)
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits = []
    for i in ranked:
        if scores[i] <= 0:
            break
        article_id, title, answer, lang = index.articles[i]
        if language is not None and lang != language:
            continue
        hits.append(
            Hit(article_id, title, answer, lang, float(scores[i]), min(1.0, float(scores[i]) / ceiling))
        )
        if len(hits) >= limit:
            break
    return hits


# --- bot answers ------------------------------------------------------------------------------


_BOT: ConfigCache[None, dict[str, Any]] = ConfigCache(BOT_SETTING)


async def bot_settings(session: AsyncSession) -> dict[str, Any]:
    row = await session.get(AppSetting, BOT_SETTING)
    return {**DEFAULT_BOT, **(row.value if row is not None and isinstance(row.value, dict) else {})}


async def current_bot_settings(session: AsyncSession) -> dict[str, Any]:
    """:func:`bot_settings` for every unmatched text, cached (parley/kit/config_cache.py says how fresh)."""
    return dict(await _BOT.get(session, None, lambda: bot_settings(session)))


async def set_bot_settings(session: AsyncSession, *, enabled: bool, min_confidence: float) -> dict[str, Any]:
    row = await session.get(AppSetting, BOT_SETTING)
    value = {"enabled": enabled, "min_confidence": min_confidence}
    if row is None:
        session.add(AppSetting(key=BOT_SETTING, value=value))
    else:
        row.value = value
        row.updated_at = utcnow()
    await session.flush()
    _BOT.changed(session)
    return value


async def confident_answer(session: AsyncSession, text: str, *, language: str | None = None) -> Hit | None:
    """The article the bot may answer with: enabled, confident enough, and clearly ahead of the runner-up."""
    settings = await current_bot_settings(session)
    if not settings["enabled"]:
        return None
    hits = await search(session, text, language=language, limit=2)
    if not hits or hits[0].confidence < float(settings["min_confidence"]):
        return None
    if len(hits) > 1 and hits[1].score > 0.8 * hits[0].score:
        return None  # two articles nearly tied: a person should choose
    return hits[0]


# --- storage ---------------------------------------------------------------------------------


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    parent_id: uuid.UUID | None = None
    position: int = 0


class ArticleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    answer: str | None = Field(default=None, max_length=2000)
    language: str = Field(default="zh_CN", pattern=r"^[a-z]{2}(_[A-Z]{2})?$")
    category_id: uuid.UUID | None = None
    keywords: list[str] = Field(default_factory=list, max_length=50)
    is_published: bool = True


async def create_category(session: AsyncSession, data: CategoryIn) -> KbCategory:
    if data.parent_id is not None and await session.get(KbCategory, data.parent_id) is None:
        raise NotFound("No such parent category")
    category = KbCategory(id=uuid.uuid4(), name=data.name, parent_id=data.parent_id, position=data.position)
    session.add(category)
    await session.flush()
    return category


async def list_categories(session: AsyncSession) -> Sequence[KbCategory]:
    return (await session.scalars(select(KbCategory).order_by(KbCategory.position, KbCategory.name))).all()


async def _check_category(session: AsyncSession, category_id: uuid.UUID | None) -> None:
    if category_id is not None and await session.get(KbCategory, category_id) is None:
        raise NotFound("No such category")


async def create_article(session: AsyncSession, data: ArticleIn) -> KbArticle:
    await _check_category(session, data.category_id)
    article = KbArticle(id=uuid.uuid4(), **data.model_dump())
    session.add(article)
    await session.flush()
    return article


async def update_article(session: AsyncSession, article_id: uuid.UUID, data: ArticleIn) -> KbArticle:
    article = await get_article(session, article_id)
    await _check_category(session, data.category_id)
    for key, value in data.model_dump().items():
        setattr(article, key, value)
    article.updated_at = utcnow()
    await session.flush()
    return article


async def get_article(session: AsyncSession, article_id: uuid.UUID) -> KbArticle:
    article = await session.get(KbArticle, article_id)
    if article is None:
        raise NotFound("No such article")
    return article


async def delete_article(session: AsyncSession, article_id: uuid.UUID) -> None:
    await session.delete(await get_article(session, article_id))
    await session.flush()


async def list_articles(
    session: AsyncSession, *, language: str | None = None, category_id: uuid.UUID | None = None
) -> Sequence[KbArticle]:
    query = select(KbArticle).order_by(KbArticle.title)
    if language:
        query = query.where(KbArticle.language == language)
    if category_id:
        query = query.where(KbArticle.category_id == category_id)
    return (await session.scalars(query)).all()
