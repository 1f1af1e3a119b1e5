"""The 24-hour customer-service window check that runs before a send (PROTOCOLS.md 2.4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parley.channels.base import ChannelWindowClosedError, OutboundType
from parley.channels.whatsapp.window import check_can_send, is_window_open, window_closes_at

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class TestCheckCanSend:
    @pytest.mark.parametrize("kind", [t for t in OutboundType if t is not OutboundType.template])
    def test_free_form_inside_the_window(self, kind: OutboundType) -> None:
        check_can_send(kind, NOW - timedelta(hours=23, minutes=59), NOW)

    def test_free_text_after_24_hours_is_refused(self) -> None:
        with pytest.raises(ChannelWindowClosedError, match="only an approved template") as caught:
            check_can_send(OutboundType.text, NOW - timedelta(hours=24, seconds=1), NOW)
        assert caught.value.code == 131047

    def test_exactly_24_hours_is_closed(self) -> None:
        with pytest.raises(ChannelWindowClosedError):
            check_can_send("image", NOW - timedelta(hours=24), NOW)

    def test_never_wrote(self) -> None:
        with pytest.raises(ChannelWindowClosedError, match="never written"):
            check_can_send("interactive", None, NOW)

    @pytest.mark.parametrize("last", [None, NOW - timedelta(days=30), NOW - timedelta(minutes=1)])
    def test_templates_always_allowed(self, last: datetime | None) -> None:
        check_can_send(OutboundType.template, last, NOW)

    def test_naive_datetimes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            check_can_send("text", datetime(2026, 3, 1, 11, 0), NOW)  # noqa: DTZ001

    def test_unknown_type(self) -> None:
        with pytest.raises(ValueError, match="carrier_pigeon"):
            check_can_send("carrier_pigeon", NOW, NOW)


def test_window_helpers() -> None:
    last = NOW - timedelta(hours=1)
    assert window_closes_at(last) == last + timedelta(hours=24)
    assert window_closes_at(None) is None
    assert is_window_open(last, NOW)
    assert not is_window_open(None, NOW)
