"""A live view of the version registry for a service: reads the registry topics from
their start (no consumer group: every replica needs every event) and folds them into a
:class:`ragops_schemas.registry.Registry`."""

from collections.abc import Callable

from ragops_schemas import Event
from ragops_schemas.lifecycle import REGISTRY_EVENT_TYPES
from ragops_schemas.registry import Registry
from ragops_shared.settings import KafkaSettings
from ragops_shared.watch import EventWatcher


class RegistryView:
    """``registry`` is current once :meth:`start` returned (it waits until the topics were
    read to their end). ``on_change`` runs on the event loop for every event that changed it.
    Later events arrive within ``KafkaSettings.registry_fetch_max_wait_ms`` (500 ms) on the
    embedded broker, which answers a fetch only when its wait expires."""

    def __init__(self, kafka: KafkaSettings, client_id: str, on_change: Callable[[Event], None] | None = None) -> None:
        self.registry = Registry()
        self.on_change = on_change
        self._watcher = EventWatcher(
            kafka,
            REGISTRY_EVENT_TYPES,
            client_id=client_id,
            from_beginning=True,
            fetch_max_wait_ms=kafka.registry_fetch_max_wait_ms,
        )
        self._watcher.listen(self._apply)

    def _apply(self, event: Event) -> None:
        if self.registry.apply(event) and self.on_change is not None:
            self.on_change(event)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start reading. Raises ``TimeoutError`` if the history is not read in ``timeout_s``
        and ``LookupError`` if a registry topic does not exist."""
        await self._watcher.start()
        if not await self._watcher.caught_up(timeout_s):
            await self._watcher.stop()
            raise TimeoutError(f"the version registry was not read within {timeout_s:.0f} s")

    async def caught_up(self, timeout_s: float) -> bool:
        """True once every registry event published before this call has been folded in."""
        return await self._watcher.caught_up(timeout_s)

    async def stop(self) -> None:
        await self._watcher.stop()
