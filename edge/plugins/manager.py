"""Loading plugins and calling their hooks in isolation.

Built in a factory (no import-time global): ``PluginHost(config, ...)``.
Plugins come from the ``edge`` entry-point group (``EDGE_LOAD_PLUGINS=a,b``
limits which; ``EDGE_LOAD_PLUGINS=`` loads none) and from ``[plugins] load =
["module", ...]`` in the config. ``EDGE_TRACE_PLUGINS=1`` logs every hook call.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import inspect
import os
import time
from typing import Any, Iterable, Iterator

import pluggy
from prometheus_client import CollectorRegistry, Counter, Histogram

from ..config import Config
from ..errors import ConfigError
from ..observability.logging import get_logger
from . import hookspecs
from .api import MessageContext

log = get_logger("edge.plugins")

DEFAULT_BUDGET_SECONDS = 0.25


class PluginHost:
    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry,
        *,
        load_entrypoints: bool = True,
        plugins: Iterable[tuple[str, object]] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ) if env is None else env
        self.pm = pluggy.PluginManager("edge")
        self.pm.add_hookspecs(hookspecs)
        self.budget = float(config.plugins.get("timeout_ms", DEFAULT_BUDGET_SECONDS * 1000)) / 1000.0
        self.errors = Counter(
            "edge_plugin_errors", "Plugin hook calls that raised", ["plugin", "hook"], registry=registry
        )
        self.timeouts = Counter(
            "edge_plugin_timeouts",
            "Async plugin hook calls cancelled for exceeding their time budget",
            ["plugin", "hook"],
            registry=registry,
        )
        self.duration = Histogram(
            "edge_plugin_hook_seconds",
            "Time spent in plugin hooks",
            ["hook"],
            registry=registry,
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 1.0),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        # Hooks are called one implementation at a time (not through pm.hook),
        # so tracing is done here rather than with pluggy's enable_tracing().
        self.trace = bool(env.get("EDGE_TRACE_PLUGINS"))
        if load_entrypoints:
            self._load_entrypoints(env.get("EDGE_LOAD_PLUGINS"))
        for name in config.plugins.get("load", []) or []:
            self._load_module(str(name))
        for name, plugin in plugins:
            self.register(plugin, name)

    # loading ------------------------------------------------------------------------

    def _load_entrypoints(self, only: str | None) -> None:
        allowed = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        for ep in importlib.metadata.entry_points(group="edge"):
            if allowed is not None and ep.name not in allowed:
                continue
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise ConfigError(f"plugin {ep.name!r} failed to load: {exc}") from exc
            self.register(plugin, ep.name)

    def _load_module(self, dotted: str) -> None:
        name = dotted.rsplit(".", 1)[-1]
        if self.pm.get_plugin(name) is not None:
            return
        try:
            module = importlib.import_module(dotted)
        except ImportError as exc:
            raise ConfigError(f"plugin module {dotted!r} cannot be imported: {exc}") from exc
        self.register(module, name)

    def register(self, plugin: object, name: str) -> None:
        self.pm.register(plugin, name=name)
        log.info("plugin_loaded", plugin=name, hooks=self.hooks_of(plugin))

    def names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def hooks_of(self, plugin: object) -> list[str]:
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "hooks": self.hooks_of(plugin)}
            for name, plugin in self.pm.list_name_plugin()
        ]

    # calling ------------------------------------------------------------------------

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        caller = getattr(self.pm.hook, hook)
        # pluggy calls the last registered first; tryfirst/trylast are in place.
        return [i for i in reversed(caller.get_hookimpls()) if not (i.hookwrapper or i.wrapper)]

    def _invoke(self, impl: pluggy.HookImpl, hook: str, kwargs: dict[str, Any]) -> Any:
        args = {name: kwargs[name] for name in impl.argnames}
        if self.trace:
            log.info("plugin_trace", msg=f"{impl.plugin_name}.{hook}({', '.join(args)})")
        return impl.function(**args)

    def report_bad_result(self, plugin: str, hook: str, expected: str) -> None:
        """A hook returned something unusable: logged and counted, then ignored."""
        self.errors.labels(plugin, hook).inc()
        log.error("plugin_hook_bad_result", plugin=plugin, hook=hook, expected=expected)

    def _failed(self, impl: pluggy.HookImpl, hook: str, exc: BaseException) -> None:
        self.errors.labels(impl.plugin_name, hook).inc()
        log.error("plugin_hook_failed", plugin=impl.plugin_name, hook=hook, error=repr(exc))

    async def _bounded(
        self, impl: pluggy.HookImpl, hook: str, coro: Any, budget: float | None = None
    ) -> Any:
        try:
            # asyncio.timeout runs the hook in the caller's task: no Task per call
            # (wait_for made one), which matters on the message path.
            async with asyncio.timeout(budget or self.budget):
                return await coro
        except TimeoutError:
            self.timeouts.labels(impl.plugin_name, hook).inc()
            log.warning("plugin_hook_timeout", plugin=impl.plugin_name, hook=hook, budget_s=self.budget)
        except Exception as exc:
            self._failed(impl, hook, exc)
        return None

    def _each(self, hook: str, kwargs: dict[str, Any]) -> Iterator[tuple[pluggy.HookImpl, Any]]:
        """(implementation, raw result) for each one that did not raise."""
        for impl in self._impls(hook):
            try:
                yield impl, self._invoke(impl, hook, kwargs)
            except Exception as exc:
                self._failed(impl, hook, exc)

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Fire-and-forget from anywhere (media plane included): sync results now,
        async implementations scheduled as bounded tasks."""
        results: list[Any] = []
        start = time.perf_counter()
        for impl, result in self._each(hook, kwargs):
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(self._bounded(impl, hook, result))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif result is not None:
                results.append(result)
        self.duration.labels(hook).observe(time.perf_counter() - start)
        return results

    async def acall(self, hook: str, *, budget_s: float | None = None, **kwargs: Any) -> list[Any]:
        """Call every implementation in turn, awaiting async ones within the budget
        (``budget_s`` overrides it, e.g. for shutdown, where plugins flush)."""
        results: list[Any] = []
        start = time.perf_counter()
        for impl, result in self._each(hook, kwargs):
            if inspect.isawaitable(result):
                result = await self._bounded(impl, hook, result, budget_s)
            if result is not None:
                results.append(result)
        self.duration.labels(hook).observe(time.perf_counter() - start)
        return results

    def collect(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """(plugin name, result) of every synchronous implementation, isolated."""
        out: list[tuple[str, Any]] = []
        for impl, result in self._each(hook, kwargs):
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                self.report_bad_result(impl.plugin_name, hook, "a plain value (this hook is not async)")
            elif result is not None:
                out.append((impl.plugin_name, result))
        return out

    def configure(self, edge: Any) -> None:
        """``edge_configure`` per plugin, each with its own ``[plugins.<name>]`` section.

        Unlike other hooks, a plugin refusing its config stops the node.
        """
        for impl in self._impls("edge_configure"):
            section = edge.plugin_config(impl.plugin_name)
            if inspect.iscoroutinefunction(impl.function):
                raise ConfigError(f"[plugins.{impl.plugin_name}]: edge_configure must not be async")
            try:
                self._invoke(impl, "edge_configure", {"edge": edge, "config": section})
            except Exception as exc:
                raise ConfigError(f"[plugins.{impl.plugin_name}]: {exc}") from exc

    async def message_received(self, edge: Any, message: MessageContext) -> None:
        """The message chain: in order, stopping at the first reject."""
        start = time.perf_counter()
        kwargs = {"edge": edge, "message": message}
        for impl, result in self._each("edge_message_received", kwargs):
            if inspect.isawaitable(result):
                await self._bounded(impl, "edge_message_received", result)
            if message.rejected is not None:
                break
        self.duration.labels("edge_message_received").observe(time.perf_counter() - start)

    async def drain(self) -> None:
        """Wait for scheduled async hook calls (used at shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
