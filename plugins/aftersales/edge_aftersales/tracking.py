"""First-response time: the histogram, the median over the last tickets, the alert.

The window is the last ``median_window`` tickets by creation, on the whole node.
A ticket in it is *decided* once its relation to the target is known:

- answered (an agent's first message, or its closing): its first-response time;
- not answered yet but already waiting longer than the target: its wait so far
  (it can only get slower, so a queue nobody answers raises the alert too).

Tickets still younger than the target are left out until they are decided.
The median of the decided tickets is the gauge
``edge_aftersales_first_response_median_seconds``; when at least
``alert_min_tickets`` are decided and the median is above the target, the alert
is raised (``edge_aftersales_first_response_alert`` = 1, a warning log line
``aftersales_slow_first_response`` and the event ``aftersales.slow_first_response``),
once; it is lowered (gauge 0, log ``aftersales_first_response_recovered`` and the
event ``aftersales.first_response_recovered``) when the median is back at or
under the target. Evaluated on every answer and once a second.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .config import AftersalesConfig

BUCKETS = (1, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
QUEUES = ("priority", "normal")


class Metrics:
    """The plugin's Prometheus metrics, in the node's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.first_response = Histogram(
            "edge_aftersales_first_response_seconds",
            "Time from a ticket's opening to its first agent answer",
            ["queue"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.median = Gauge(
            "edge_aftersales_first_response_median_seconds",
            "Median first-response time of the decided tickets among the last N (see docs/aftersales.md)",
            registry=registry,
        )
        self.decided = Gauge(
            "edge_aftersales_first_response_window_tickets",
            "Decided tickets the first-response median is computed over",
            registry=registry,
        )
        self.target = Gauge(
            "edge_aftersales_first_response_target_seconds",
            "The configured first-response target",
            registry=registry,
        )
        self.alert = Gauge(
            "edge_aftersales_first_response_alert",
            "1 while the first-response median is above the target",
            registry=registry,
        )
        self.opened = Counter(
            "edge_aftersales_tickets_opened", "Service tickets opened", ["queue"], registry=registry
        )
        self.closed = Counter("edge_aftersales_tickets_closed", "Service tickets closed", registry=registry)
        self.open = Gauge("edge_aftersales_open_tickets", "Open service tickets", ["queue"], registry=registry)
        self.questions = Counter(
            "edge_aftersales_faq_questions",
            "Questions asked, by outcome: answered (FAQ), ticket (opened for an agent), no_match",
            ["result"],
            registry=registry,
        )
        for queue in QUEUES:
            self.first_response.labels(queue)
            self.opened.labels(queue)
            self.open.labels(queue)
        for result in ("answered", "ticket", "no_match"):
            self.questions.labels(result)


class FirstResponseTracker:
    def __init__(
        self,
        config: AftersalesConfig,
        metrics: Metrics,
        logger: Any,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.logger = logger
        self.emit = emit
        # ticket_id -> [created_at, first_response_seconds | None], oldest first
        self.window: OrderedDict[str, list[Any]] = OrderedDict()
        self.alerting = False
        self.median: float | None = None
        self.decided = 0
        metrics.target.set(config.first_response_target_seconds)
        metrics.alert.set(0)

    def load(self, rows: Iterable[tuple[str, float, float | None]]) -> None:
        """The last tickets from the store (oldest first), at start-up."""
        for ticket_id, created_at, seconds in rows:
            self._put(ticket_id, created_at, seconds)

    def _put(self, ticket_id: str, created_at: float, seconds: float | None) -> None:
        self.window[ticket_id] = [created_at, seconds]
        while len(self.window) > self.config.median_window:
            self.window.popitem(last=False)

    def opened(self, ticket_id: str, created_at: float) -> None:
        self._put(ticket_id, created_at, None)

    def answered(self, ticket_id: str, queue: str, seconds: float, now: float) -> None:
        self.metrics.first_response.labels(queue).observe(seconds)
        entry = self.window.get(ticket_id)
        if entry is not None:
            entry[1] = seconds
        self.evaluate(now)

    def evaluate(self, now: float) -> None:
        target = self.config.first_response_target_seconds
        values = []
        for created_at, seconds in self.window.values():
            if seconds is not None:
                values.append(seconds)
            elif now - created_at > target:
                values.append(now - created_at)
        self.decided = len(values)
        self.median = statistics.median(values) if values else None
        self.metrics.median.set(self.median if self.median is not None else 0.0)
        self.metrics.decided.set(self.decided)
        slow = self.median is not None and self.decided >= self.config.alert_min_tickets and self.median > target
        if slow and not self.alerting:
            self.alerting = True
            self.metrics.alert.set(1)
            data = self.summary(now)
            self.logger.warning("aftersales_slow_first_response", **data)
            self.emit("aftersales.slow_first_response", data)
        elif not slow and self.alerting and (self.median is None or self.median <= target):
            self.alerting = False
            self.metrics.alert.set(0)
            data = self.summary(now)
            self.logger.info("aftersales_first_response_recovered", **data)
            self.emit("aftersales.first_response_recovered", data)

    def summary(self, now: float) -> dict[str, Any]:
        return {
            "median_seconds": None if self.median is None else round(self.median, 3),
            "target_seconds": self.config.first_response_target_seconds,
            "tickets": self.decided,
            "window": self.config.median_window,
            "alert": self.alerting,
            "at": now,
        }
