"""What every RPC needs: the inventory database, the Kubernetes API and the
namespace TaskSpecs are created in. Built inside the running event loop (the
engine's pool and the HTTP client belong to it)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nicoflow.inventory.db import make_async_engine, make_async_session_factory
from nicoflow.kube.client import KubeClient

DEFAULT_NAMESPACE = "nico-flow"
# A day: the original's clients poll their tasks for hours, not weeks; the
# history stays in PostgreSQL, where GetTasksByIDs and ListTasks still find it.
DEFAULT_TASKSPEC_TTL = 86400


@dataclass
class Backend:
    sessions: async_sessionmaker[AsyncSession]
    kube: KubeClient
    namespace: str = DEFAULT_NAMESPACE
    engine: AsyncEngine | None = None
    # ttlSecondsAfterFinished of the TaskSpecs operation RPCs create (0: none)
    taskspec_ttl: int = DEFAULT_TASKSPEC_TTL

    @classmethod
    def open(
        cls,
        *,
        database_url: str | None,
        kubeconfig: str | None,
        namespace: str = DEFAULT_NAMESPACE,
        taskspec_ttl: int = DEFAULT_TASKSPEC_TTL,
    ) -> Backend:
        """Call from inside the event loop that will serve the RPCs."""
        engine = make_async_engine(database_url, pool_size=10, max_overflow=10)
        return cls(
            sessions=make_async_session_factory(engine),
            kube=KubeClient.from_env(kubeconfig),
            namespace=namespace,
            engine=engine,
            taskspec_ttl=taskspec_ttl,
        )

    async def close(self) -> None:
        await self.kube.close()
        if self.engine is not None:
            await self.engine.dispose()
