"""Graph errors → the four send outcomes (PROTOCOLS.md 2.6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from parley.channels.base import (
    ChannelPermanentError,
    ChannelQuotaExceededError,
    ChannelRetriableError,
    ChannelWindowClosedError,
)
from parley.channels.whatsapp.errors import from_network, from_response, to_channel_error


def graph(code: int, status: int = 400, **extra: object) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "error": {
                "message": f"(#{code}) x",
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": "A",
                **extra,
            }
        },
    )


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (131047, ChannelWindowClosedError),
        (130429, ChannelRetriableError),
        (131056, ChannelRetriableError),
        (80007, ChannelRetriableError),
        (4, ChannelRetriableError),
        (131000, ChannelRetriableError),
        (131016, ChannelRetriableError),
        (135000, ChannelRetriableError),
        (131048, ChannelQuotaExceededError),
        (131026, ChannelPermanentError),
        (131049, ChannelPermanentError),
        (131050, ChannelPermanentError),
        (131051, ChannelPermanentError),
        (131062, ChannelPermanentError),
        (132000, ChannelPermanentError),
        (132001, ChannelPermanentError),
        (132015, ChannelPermanentError),
        (132016, ChannelPermanentError),
        (100, ChannelPermanentError),
        (190, ChannelPermanentError),
        (200, ChannelPermanentError),
        (368, ChannelPermanentError),
        (130472, ChannelPermanentError),
    ],
)
def test_table(code: int, outcome: type[Exception]) -> None:
    error = from_response(graph(code))
    assert type(error) is outcome
    assert error.code == code


def test_retry_after_defaults() -> None:
    throttled = from_response(graph(130429, 429))
    assert isinstance(throttled, ChannelRetriableError)
    assert throttled.retry_after_s == 1.0
    pair = from_response(graph(131056, 429))
    assert isinstance(pair, ChannelRetriableError)
    assert pair.retry_after_s == 6.0


def test_retry_after_header_wins() -> None:
    response = httpx.Response(
        429, headers={"Retry-After": "17"}, json={"error": {"code": 130429, "message": "x"}}
    )
    error = from_response(response)
    assert isinstance(error, ChannelRetriableError)
    assert error.retry_after_s == 17.0


def test_quota_resets_a_day_later() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    error = to_channel_error(code=131048, message="spam", now=now)
    assert isinstance(error, ChannelQuotaExceededError)
    assert error.reset_at == now + timedelta(hours=24)


def test_token_error_says_what_to_do() -> None:
    assert "new system-user token" in from_response(graph(190, 401)).message


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(500, ChannelRetriableError), (502, ChannelRetriableError), (404, ChannelPermanentError)],
)
def test_bodies_without_graph_error(status: int, outcome: type[Exception]) -> None:
    assert type(from_response(httpx.Response(status, text="<html>oops</html>"))) is outcome


def test_unknown_codes() -> None:
    assert isinstance(from_response(graph(999999, 400, is_transient=True)), ChannelRetriableError)
    assert isinstance(from_response(graph(999999, 503)), ChannelRetriableError)
    assert isinstance(from_response(graph(999999, 400)), ChannelPermanentError)


def test_network() -> None:
    assert isinstance(from_network(httpx.ConnectTimeout("slow")), ChannelRetriableError)


def test_details_reach_the_message() -> None:
    response = graph(131009, error_data={"messaging_product": "whatsapp", "details": "buttons: too many"})
    assert "buttons: too many" in from_response(response).message
