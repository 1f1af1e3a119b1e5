"""``parley bench keywords``: how long the compiled matcher takes per message with N rules (p99 ``match_ms``)."""

from __future__ import annotations

import gc
import json
import random
import string
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import typer

from parley.automation.matching import Keyword, Matcher, MatchKind
from parley.automation.rules import CompiledRule
from parley.automation.schemas import Reply, Schedule
from parley.cli import bench_app

# Common characters, so that generated keywords overlap each other and the messages the way real ones do.
HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后"
    "多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合"
    "还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只"
    "没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边"
)


def _word(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return "".join(rng.choice(HANZI) for _ in range(rng.randint(2, 8)))
    return " ".join(
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8)))
        for _ in range(rng.randint(1, 3))
    )


def run(rules: int, messages: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    office = Schedule(timezone="Asia/Shanghai", days=[0, 1, 2, 3, 4], start="09:00", end="18:00")
    reply = (Reply(type="text", text="ok"),)
    keywords: list[Keyword[CompiledRule]] = []
    texts: list[str] = []
    for i in range(rules):
        # A quarter of the rules are limited to office hours, so the time-window filter is exercised too.
        target = CompiledRule(
            id=uuid.uuid4(),
            name=f"rule {i}",
            replies=reply,
            flow_id=None,
            schedule=office if i % 4 == 0 else None,
        )
        text = _word(rng)
        texts.append(text)
        kind = rng.choices([MatchKind.contains, MatchKind.exact, MatchKind.fuzzy], weights=[6, 2, 2])[0]
        keywords.append(Keyword(text=text, kind=kind, target=target, priority=rng.randint(0, 3)))
    started = time.perf_counter()
    matcher = Matcher(keywords)
    build_ms = (time.perf_counter() - started) * 1000

    samples: list[str] = []
    for _ in range(messages):
        roll = rng.random()
        if roll < 0.25:  # seed 001: a quarter of messages are five characters or fewer
            samples.append("".join(rng.choice(HANZI) for _ in range(rng.randint(1, 5))))
        elif roll < 0.5:  # a keyword with a typo
            word = list(rng.choice(texts))
            word[rng.randrange(len(word))] = rng.choice(HANZI)
            samples.append("".join(word))
        elif roll < 0.8:  # a sentence around a keyword
            samples.append(_word(rng) + rng.choice(texts) + _word(rng))
        else:  # a long message
            samples.append("".join(_word(rng) for _ in range(rng.randint(5, 20))))
    at = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    timings: list[float] = []
    matched = 0
    gc.collect()
    for message in samples:
        t0 = time.perf_counter()
        best = matcher.best(message, accept=lambda r: r.active(at))
        timings.append((time.perf_counter() - t0) * 1000)
        matched += best is not None
    timings.sort()

    def pct(p: float) -> float:
        return round(timings[min(len(timings) - 1, int(len(timings) * p))], 4)

    return {
        "bench": "keywords",
        "rules": rules,
        "keywords": matcher.size,
        "messages": messages,
        "matched": matched,
        "build_ms": round(build_ms, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "max_ms": round(timings[-1], 4),
        "match_ms": pct(0.99),
    }


@bench_app.command("keywords")
def bench_keywords(
    rules: int = typer.Option(10_000, help="Rules, mixed exact/contains/fuzzy, Chinese and English."),
    messages: int = typer.Option(20_000, help="Messages to match."),
    seed: int = typer.Option(8, help="Random seed."),
) -> None:
    """Matches messages against N compiled keyword rules; prints JSON with the p99 as ``match_ms``."""
    print(json.dumps(run(rules, messages, seed)))
