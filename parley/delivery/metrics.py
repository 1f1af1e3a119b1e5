"""Prometheus metrics of delivery: counters from the workers, gauges from the operations summary."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from parley.delivery.service import Summary

SENT = Counter("parley_delivery_sent_total", "Messages the platform accepted", ["account"])
FAILED = Counter(
    "parley_delivery_failed_total", "Messages failed permanently or dead-lettered", ["account", "reason"]
)
RETRIED = Counter(
    "parley_delivery_retried_total", "Sends that failed and were rescheduled", ["account", "reason"]
)
DEFERRED = Counter(
    "parley_delivery_deferred_total", "Sends put back by flow control (rate or quota)", ["account", "cause"]
)
SEND_SECONDS = Histogram(
    "parley_delivery_send_seconds",
    "Time of one platform send call",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

QUEUE_DEPTH = Gauge("parley_delivery_queue_depth", "Jobs waiting", ["account", "priority"])
SEND_RATE = Gauge("parley_delivery_send_rate", "Messages sent per second over the last minute")
QUOTA_USED = Gauge("parley_delivery_quota_used", "Calls used today against a daily quota", ["account", "api"])
QUOTA_LIMIT = Gauge("parley_delivery_quota_limit", "Daily quota", ["account", "api"])
FAILURES = Gauge("parley_delivery_failures", "Failed and dead-lettered jobs by reason", ["status", "reason"])
OLDEST_WAITING = Gauge("parley_delivery_oldest_waiting_seconds", "Age of the oldest waiting job")


def publish(summary: Summary) -> None:
    """Sets the gauges from a summary (the same figures the operations page shows)."""
    QUEUE_DEPTH.clear()
    for row in summary.depth:
        QUEUE_DEPTH.labels(row["account_id"], row["priority"]).set(row["count"])
    SEND_RATE.set(summary.send_rate_per_s)
    QUOTA_USED.clear()
    QUOTA_LIMIT.clear()
    for quota in summary.quotas:
        QUOTA_USED.labels(quota["account_id"], quota["api"]).set(quota["used"])
        QUOTA_LIMIT.labels(quota["account_id"], quota["api"]).set(quota["limit"])
    FAILURES.clear()
    for failure in summary.failures:
        FAILURES.labels(failure["status"], failure["code"]).set(failure["count"])
    OLDEST_WAITING.set(summary.oldest_waiting["age_s"] if summary.oldest_waiting else 0)
