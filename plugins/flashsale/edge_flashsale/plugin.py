"""The flash-sale plugin's hook implementations: wiring between edge and the service.

Registered through the ``edge`` entry point as ``flashsale``; its config section
is ``[plugins.flashsale]``. The service is offered to other plugins as
``edge.service("flashsale")`` from ``edge_startup`` on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edge.plugins import hookimpl
from edge.plugins.api import ConnectionInfo, Edge, MessageContext, ParticipantInfo

from .announcer import Announcer
from .config import FlashSaleConfig, parse_config
from .handlers import handle
from .inventory import Inventory
from .messages import message_types
from .metrics import FlashSaleMetrics
from .replies import ms, order_status, price
from .routes import routes
from .service import FlashSales

NAME = "flashsale"
PRUNE_EVERY = 3600.0
START_RETRY_SECONDS = 1.0


def make_inventory(config: FlashSaleConfig, log: Any = None) -> Inventory:
    if config.backend == "redis":
        from .redis_backend import RedisInventory

        return RedisInventory(
            config.redis_url, Path(config.db_path), prefix=config.redis_prefix,
            idempotency_ttl=config.idempotency_ttl_seconds, reconcile_interval=config.reconcile_interval_seconds, log=log,
        )
    from .sqlite_backend import SqliteInventory

    return SqliteInventory(Path(config.db_path), idempotency_ttl=config.idempotency_ttl_seconds)


class FlashSalePlugin:
    def __init__(self) -> None:
        self.config = FlashSaleConfig()
        self.edge: Edge | None = None
        self.service: FlashSales | None = None
        self.announcer: Announcer | None = None
        self._log: Any = None
        self._starting: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self.metrics: FlashSaleMetrics | None = None

    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        self.config = parse_config(config, edge.data_dir(NAME))
        self.edge = edge

    @hookimpl
    def edge_message_types(self, edge: Edge) -> list[Any]:
        return message_types(self.config)

    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Any]:
        self.edge = edge
        return routes(self)

    # lifecycle ------------------------------------------------------------------------

    @hookimpl
    async def edge_startup(self, edge: Edge) -> None:
        self.edge = edge
        self._log = edge.logger(NAME)
        self.service = FlashSales(
            make_inventory(self.config, self._log), hold_seconds=self.config.hold_seconds,
            idempotency_ttl=self.config.idempotency_ttl_seconds, log=self._log,
        )
        edge.provide(NAME, self.service)
        if self.metrics is None:  # one set per registry (a node builds it once)
            self.metrics = FlashSaleMetrics(edge.metrics_registry)
        self.service.on_outcome(self.metrics.outcome)
        self.announcer = Announcer(self.service, edge.broadcast, hz=self.config.stock_update_hz, log=self._log)
        # Opening may take longer than the hook's budget (Redis reconciliation):
        # it runs as a task; the hook waits for it only while the budget allows.
        self._starting = asyncio.ensure_future(self._start())
        budget = float(edge.config.plugins.get("timeout_ms", 250)) / 1000.0
        await asyncio.wait([self._starting], timeout=budget * 0.8)

    async def _start(self) -> None:
        assert self.service is not None and self.announcer is not None
        while True:
            try:
                await self.service.start()
                break
            except Exception as exc:
                self._log.error("flashsale_start_failed", backend=self.config.backend, error=repr(exc),
                                retry_in_s=START_RETRY_SECONDS)
                try:
                    await self.service.inventory.close()
                except Exception:
                    pass
                self.service.inventory = make_inventory(self.config, self._log)
                await asyncio.sleep(START_RETRY_SECONDS)
        self.announcer.start()
        self._log.info("flashsale_ready", backend=self.config.backend, sales=len(self.service.sales()))

    @hookimpl
    async def edge_shutdown(self, edge: Edge) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        if self.announcer is not None:
            await self.announcer.stop()
        if self.service is not None and self.service.ready:
            await self.service.close()

    # messages -------------------------------------------------------------------------

    @hookimpl
    async def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
        await handle(self, edge, message)

    @hookimpl
    def edge_connection_opened(
        self, edge: Edge, room: str, participant: ParticipantInfo, connection: ConnectionInfo
    ) -> None:
        """A new connection hears of the room's sales that are not over."""
        service, announcer = self.service, self.announcer
        if service is None or announcer is None or not service.ready:
            return
        now = service.clock()
        for sale in service.sales(room):
            if sale.ends_at <= now:
                continue
            edge.send_to(room, participant.identity, "sale.info", {
                "sale_id": sale.sale_id, "sku": sale.sku, "title": sale.title, "state": sale.state(now),
                "starts_at": ms(sale.starts_at), "ends_at": ms(sale.ends_at),
                "per_user_limit": sale.per_user_limit, "stock": sale.stock,
                "remaining": announcer.last_remaining(sale.sale_id), **price(sale),
            }, connection=connection.id)

    # housekeeping -----------------------------------------------------------------------

    @hookimpl
    def edge_tick(self, edge: Edge, now: float) -> None:
        """Expire holds that ran out (each returns its stock once) and prune old keys,
        in a task of its own so a slow round never holds up the tick."""
        if self.service is None or not self.service.ready:
            return
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = asyncio.ensure_future(self._sweep(edge, now))

    async def _sweep(self, edge: Edge, now: float) -> None:
        service = self.service
        assert service is not None
        try:
            expired = await service.expire_due(now)
            if self.metrics is not None:
                self.metrics.expired_orders(expired)
            for order in expired:
                edge.send_to(order.room, order.user, "order.status", order_status(order, "expired"))
            if now - self._pruned_at >= PRUNE_EVERY:
                self._pruned_at = now
                await service.prune(now)
        except Exception as exc:
            self._log.warning("flashsale_sweep_failed", error=repr(exc))


plugin = FlashSalePlugin()
