"""The keyword matcher: longest wins across kinds and languages, typos forgiven, unrelated text left alone."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from parley.automation.matching import Keyword, Matcher, MatchKind, normalize
from parley.automation.schemas import Schedule

E, C, F = MatchKind.exact, MatchKind.contains, MatchKind.fuzzy

RULES = [
    ("退款", C, "refund"),
    ("退款进度", C, "refund-progress"),
    ("查询退款进度", C, "refund-progress-query"),
    ("退货", C, "return"),
    ("发票", C, "invoice"),
    ("电子发票", C, "e-invoice"),
    ("refund", C, "refund-en"),
    ("refund status", C, "refund-status-en"),
    ("hi", E, "greeting"),
    ("你好", E, "greeting-zh"),
    ("客服", E, "agent"),
    ("人工客服", C, "agent-human"),
    ("营业时间", F, "hours"),
    ("opening hours", F, "hours-en"),
    ("查询订单状态", F, "order-status"),
    ("VIN", C, "vin"),
    ("vin code", C, "vin-code"),
]


@pytest.fixture(scope="module")
def matcher() -> Matcher[str]:
    return Matcher(Keyword(text, kind, target) for text, kind, target in RULES)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # Overlapping Chinese keywords: the longest one found in the text wins.
        ("我想查询退款进度", "refund-progress-query"),
        ("退款进度怎么样了", "refund-progress"),
        ("怎么退款", "refund"),
        ("我要开电子发票", "e-invoice"),
        ("发票抬头写错了", "invoice"),
        ("转人工客服", "agent-human"),
        # Exact rules only match the whole message (punctuation and width aside).
        ("客服", "agent"),
        ("客服！", "agent"),
        ("Hi!", "greeting"),
        ("ｈｉ", "greeting"),
        ("你好", "greeting-zh"),
        # English overlaps, case-insensitive; mixed languages in one text.
        ("What is my REFUND status?", "refund-status-en"),
        ("refund please", "refund-en"),
        ("我的refund status呢", "refund-status-en"),
        ("my vin code is LSVAU2180N2183294", "vin-code"),
        ("VIN?", "vin"),
        # Fuzzy: a one-character typo of a whole short message.
        ("营业时问", "hours"),
        ("opening hour", "hours-en"),
        ("openning hours", "hours-en"),
        ("查询订单壮态", "order-status"),
        ("营业时间", "hours"),
    ],
)
def test_the_longest_matching_keyword_wins(matcher: Matcher[str], message: str, expected: str) -> None:
    best = matcher.best(message)
    assert best is not None, message
    assert best.target == expected


@pytest.mark.parametrize(
    "message",
    [
        "hi there",  # exact "hi" is not contained matching
        "谢谢",
        "你好吗",  # exact 你好 only as the whole message
        "营业执照",  # two characters away from 营业时间
        "opening doors",
        "查询物流状态",  # two edits from 查询订单状态
        "",
        "   ",
    ],
)
def test_unrelated_text_is_not_caught(matcher: Matcher[str], message: str) -> None:
    assert matcher.best(message) is None


def test_short_keywords_are_never_fuzzy() -> None:
    # 退款 and 退货 differ by one character and mean different things.
    matcher = Matcher([Keyword("退款", F, "refund")])
    assert matcher.best("退货") is None
    assert matcher.best("退款") is not None


def test_exact_beats_contains_at_equal_length_and_priority_breaks_ties() -> None:
    matcher = Matcher(
        [
            Keyword("价格", C, "contains-low"),
            Keyword("价格", C, "contains-high", priority=5),
            Keyword("价格", E, "exact"),
        ]
    )
    assert [m.target for m in matcher.match("价格")] == ["exact", "contains-high", "contains-low"]
    assert matcher.best("价格多少") is not None and matcher.best("价格多少").target == "contains-high"  # type: ignore[union-attr]


def test_accept_filters_rules_out_of_their_time_window() -> None:
    matcher = Matcher([Keyword("退款", C, "short"), Keyword("退款进度", C, "long")])
    best = matcher.best("退款进度", accept=lambda target: target != "long")
    assert best is not None and best.target == "short"


def test_normalize_folds_width_case_and_edge_punctuation() -> None:
    assert normalize("  ＨＥＬＬＯ   World！ ") == "hello world"


def test_ten_thousand_rules_still_find_the_right_one() -> None:
    rng = random.Random(8)
    alphabet = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"
    keywords = [
        Keyword("".join(rng.choice(alphabet) for _ in range(rng.randint(3, 9))), rng.choice([E, C, F]), i)
        for i in range(10_000)
    ]
    keywords.append(Keyword("预约保养服务", C, "service-booking"))
    matcher = Matcher(keywords)
    best = matcher.best("你好我想预约保养服务谢谢")
    assert best is not None
    assert best.keyword == "预约保养服务" or len(best.keyword) >= len("预约保养服务")


class TestSchedule:
    def test_weekday_office_hours_in_shanghai(self) -> None:
        office = Schedule(timezone="Asia/Shanghai", days=[0, 1, 2, 3, 4], start="09:00", end="18:00")
        # Monday 2026-11-23 10:00 in Shanghai is 02:00 UTC.
        assert office.active(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
        assert not office.active(datetime(2026, 11, 23, 11, 0, tzinfo=UTC))  # 19:00 local
        assert not office.active(datetime(2026, 11, 22, 2, 0, tzinfo=UTC))  # Sunday

    def test_overnight_window_belongs_to_the_day_it_starts(self) -> None:
        night = Schedule(timezone="UTC", days=[4], start="22:00", end="06:00")  # Friday night
        assert night.active(datetime(2026, 11, 27, 23, 0, tzinfo=UTC))
        assert night.active(datetime(2026, 11, 28, 5, 0, tzinfo=UTC))  # Saturday early morning
        assert not night.active(datetime(2026, 11, 28, 23, 0, tzinfo=UTC))

    def test_unknown_time_zone_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown time zone"):
            Schedule(timezone="Mars/Olympus")
