"""kopf handlers: thin adapters from watch events to the runtime.

Tasks, TaskSpecs and Racks use event handlers only, so kopf writes nothing on
them (no progress annotations, no diff-base copies): every write is one our
controllers decided. OperationRules are few and small and use kopf's change
handlers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from nicoflow.controller.metrics import timed
from nicoflow.controller.resources import GROUP, VERSION
from nicoflow.controller.rules import rule_status
from nicoflow.controller.runtime import Options, Runtime
from nicoflow.kube import config as kube_config

log = logging.getLogger(__name__)

OPTIONS = Options()


class _EssenceOnlyForRules(kopf.AnnotationsDiffBaseStorage):
    """kopf builds a diff base (a deep copy of the body) for every watch event
    of every resource, though only change handlers use it. Ours are on
    OperationRules alone; for Tasks, TaskSpecs and Racks the copy was a
    sixth of the operator's CPU in a restart of 100 racks."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        if body.get("kind") != "OperationRule":
            return kopf.BodyEssence()
        essence: kopf.BodyEssence = super().build(body=body, extra_fields=extra_fields)
        return essence


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = _EssenceOnlyForRules(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.reporting_component = "nico-flow-operator"
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    settings.watching.inactivity_timeout = 70
    # List in pages: one LIST of 1,000 Racks (or 5,000 Tasks) decoded at once
    # costs the process ~150 MB, which Python keeps once it has it.
    settings.watching.chunk_size = 100
    settings.networking.error_backoffs = [1, 1, 2, 3, 5, 8, 13, 21]
    settings.execution.max_workers = 8
    memo.runtime = await Runtime.create(OPTIONS)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the credentials our own client uses (nicoflow.kube.config:
    the kubernetes loader, credential files only in the private directory)."""
    cfg = kube_config.load(OPTIONS.kubeconfig)
    return kopf.ConnectionInfo(
        server=cfg.server,
        ca_path=str(cfg.ca_file) if cfg.ca_file else None,
        insecure=cfg.insecure,
        token=cfg.bearer(),
        certificate_path=str(cfg.client_cert) if cfg.client_cert else None,
        private_key_path=str(cfg.client_key) if cfg.client_key else None,
        default_namespace=cfg.namespace,
    )


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    if runtime is not None:
        await runtime.close()


# -- Tasks and TaskSpecs ---------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "tasks")
@timed("Task")
async def task_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    _runtime(memo).tasks.observe(event.get("type") or "ADDED", dict(event["object"]))


@kopf.on.event(GROUP, VERSION, "taskspecs")
@timed("TaskSpec")
async def taskspec_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    etype = event.get("type") or "ADDED"
    body: dict[str, Any] = dict(event["object"])
    runtime.tasks.observe_taskspec(etype, body)
    runtime.schedules.observe(etype, body)
    if etype != "DELETED":
        try:
            await runtime.taskspecs.reconcile(body)
        except Exception:
            # event handlers are not retried by kopf: log, and the next event
            # (or the operator's restart) tries again
            log.exception(
                "taskspec %s/%s: reconcile failed",
                body["metadata"].get("namespace"),
                body["metadata"].get("name"),
            )


@kopf.on.event(GROUP, VERSION, "taskschedules")
@timed("TaskSchedule")
async def schedule_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    _runtime(memo).schedules.observe(event.get("type") or "ADDED", dict(event["object"]))


# -- OperationRules ---------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "operationrules")
async def rule_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    _runtime(memo).rules.observe(event.get("type") or "ADDED", dict(event["object"]))


@kopf.on.resume(GROUP, VERSION, "operationrules")
@kopf.on.create(GROUP, VERSION, "operationrules")
@kopf.on.update(GROUP, VERSION, "operationrules")
@timed("OperationRule")
async def rule_changed(body: kopf.Body, patch: kopf.Patch, memo: Any, **_: Any) -> None:
    runtime = _runtime(memo)
    obj = dict(body)
    candidate = runtime.rules.observe("MODIFIED", obj)
    if candidate is None:
        return
    status = rule_status(obj, candidate, runtime.rules.default_conflict(candidate))
    patch.status.update(status)
    if not candidate.valid:
        kopf.warn(body, reason="InvalidDefinition", message=candidate.problem[:1000])


# -- Racks ----------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "racks")
async def rack_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    _runtime(memo).racks.observe(event.get("type") or "ADDED", dict(event["object"]))


@kopf.on.event(GROUP, VERSION, "rackaccesspolicies")
async def access_policy_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    access = _runtime(memo).access
    etype, body = event.get("type") or "ADDED", dict(event["object"])
    access.observe(etype, body)
    if etype != "DELETED":
        await access.acknowledge(body)


@kopf.on.probe(id="tasks")
def tasks_probe(memo: Any, **_: Any) -> dict[str, int]:
    runtime = getattr(memo, "runtime", None)
    if runtime is None:
        return {}
    entries = runtime.tasks.entries.values()
    return {
        "known": len(entries),
        "running": sum(1 for e in entries if e.runner is not None),
    }
