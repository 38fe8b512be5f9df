"""Admission policies evaluated inside the apiserver (CEL, no webhook to run).

Who may write what is decided by RBAC on two verbs of our own, which nobody
holds unless a role grants them (cluster admins hold every verb):

- `drive` on `tasks`: create Tasks, write their status and change what they
  run. The operator's ServiceAccount has it; everyone else may only set
  `spec.cancel` on a Task (policy nico-flow-tasks).
- `attribute` on `taskspecs` / `taskschedules`: set the
  `flow.nico.io/on-behalf-of` annotation, i.e. vouch that an object is made for
  someone else (the API for its certificate callers, the operator for a
  TaskSchedule's author). Policy nico-flow-requester.

`flow.nico.io/requested-by` is written by the apiserver itself: policy
nico-flow-requested-by stamps the requesting user on create and keeps it on
every update. Rendered by `flow crds` into crds/admission-policies.yaml (and
the chart) as one v1 List."""

from __future__ import annotations

from typing import Any

from nicoflow.api.common import GROUP

VERB_DRIVE = "drive"
VERB_ATTRIBUTE = "attribute"
ANNOTATION_REQUESTED_BY = f"{GROUP}/requested-by"
ANNOTATION_ON_BEHALF_OF = f"{GROUP}/on-behalf-of"
LABEL_PREFIX = f"{GROUP}/"
FILENAME = "admission-policies.yaml"

TASKS_POLICY = "nico-flow-tasks"
REQUESTER_POLICY = "nico-flow-requester"
REQUESTED_BY_POLICY = "nico-flow-requested-by"

_V1 = "admissionregistration.k8s.io/v1"
_LABELS = {"app.kubernetes.io/part-of": "nico-flow"}

Json = dict[str, Any]


def _can(verb: str, resource: str) -> str:
    return (
        f"authorizer.group('{GROUP}').resource({resource})"
        f".namespace(request.namespace).check('{verb}').allowed()"
    )


def _rules(resources: list[str], operations: list[str]) -> Json:
    return {
        "resourceRules": [
            {
                "apiGroups": [GROUP],
                "apiVersions": ["*"],
                "operations": operations,
                "resources": resources,
            }
        ]
    }


def _annotation(obj: str, key: str) -> str:
    return (
        f"has({obj}.metadata.annotations) && '{key}' in {obj}.metadata.annotations ? "
        f"{obj}.metadata.annotations['{key}'] : ''"
    )


def _meta(name: str, kind: str) -> Json:
    return {"apiVersion": _V1, "kind": kind, "metadata": {"name": name, "labels": dict(_LABELS)}}


def tasks_policy() -> Json:
    """Only holders of `drive` create Tasks or write their status; others may
    update a Task only without touching its owner or flow.nico.io labels (the
    CRD's own rule keeps the spec fixed except spec.cancel)."""
    labels_kept = (
        f"variables.oldLabels.all(k, !k.startsWith('{LABEL_PREFIX}') || "
        "(k in variables.labels && variables.labels[k] == variables.oldLabels[k])) && "
        f"variables.labels.all(k, !k.startsWith('{LABEL_PREFIX}') || k in variables.oldLabels)"
    )
    body = _meta(TASKS_POLICY, "ValidatingAdmissionPolicy")
    body["spec"] = {
        "failurePolicy": "Fail",
        "matchConstraints": _rules(["tasks", "tasks/status"], ["CREATE", "UPDATE"]),
        "matchConditions": [
            {"name": "not-the-operator", "expression": "!" + _can(VERB_DRIVE, "'tasks'")}
        ],
        "variables": [
            {
                # absent, not empty, on requests to the object itself
                "name": "subresource",
                "expression": "has(request.subResource) ? request.subResource : ''",
            },
            {
                "name": "labels",
                "expression": "has(object.metadata.labels) ? object.metadata.labels : {}",
            },
            {
                "name": "oldLabels",
                "expression": "request.operation == 'UPDATE' && "
                "has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}",
            },
            {
                "name": "owners",
                "expression": "has(object.metadata.ownerReferences) ? "
                "object.metadata.ownerReferences.map(o, o.uid) : []",
            },
            {
                "name": "oldOwners",
                "expression": "request.operation == 'UPDATE' && "
                "has(oldObject.metadata.ownerReferences) ? "
                "oldObject.metadata.ownerReferences.map(o, o.uid) : []",
            },
        ],
        "validations": [
            {
                "expression": "request.operation != 'CREATE'",
                "messageExpression": "'Tasks are created only by the nico-flow operator, one per "
                "rack of a TaskSpec: create a TaskSpec instead (' + request.userInfo.username + "
                f"' lacks the RBAC verb {VERB_DRIVE} on tasks.{GROUP})'",
                "reason": "Forbidden",
            },
            {
                "expression": "variables.subresource != 'status'",
                "messageExpression": "'a Task\\'s status is written only by the nico-flow "
                f"operator (' + request.userInfo.username + ' lacks the RBAC verb {VERB_DRIVE} "
                f"on tasks.{GROUP})'",
                "reason": "Forbidden",
            },
            {
                "expression": "request.operation != 'UPDATE' || variables.subresource != '' || "
                f"(variables.owners == variables.oldOwners && {labels_kept})",
                "messageExpression": "request.userInfo.username + ' may only set spec.cancel "
                "on a Task: its owner and its flow.nico.io/ labels are set by the nico-flow "
                "operator'",
                "reason": "Forbidden",
            },
        ],
    }
    return body


def requester_policy() -> Json:
    """The audit annotations cannot be forged: requested-by names the user who
    created the object (or is absent), and only holders of `attribute` set or
    change on-behalf-of."""
    body = _meta(REQUESTER_POLICY, "ValidatingAdmissionPolicy")
    body["spec"] = {
        "failurePolicy": "Fail",
        "matchConstraints": _rules(["taskspecs", "taskschedules"], ["CREATE", "UPDATE"]),
        "variables": [
            {"name": "by", "expression": _annotation("object", ANNOTATION_REQUESTED_BY)},
            {
                "name": "oldBy",
                "expression": "request.operation == 'UPDATE' ? "
                f"({_annotation('oldObject', ANNOTATION_REQUESTED_BY)}) : ''",
            },
            {"name": "onBehalfOf", "expression": _annotation("object", ANNOTATION_ON_BEHALF_OF)},
            {
                "name": "oldOnBehalfOf",
                "expression": "request.operation == 'UPDATE' ? "
                f"({_annotation('oldObject', ANNOTATION_ON_BEHALF_OF)}) : ''",
            },
        ],
        "validations": [
            {
                "expression": "request.operation == 'CREATE' ? "
                "variables.by in ['', request.userInfo.username] : variables.by == variables.oldBy",
                "messageExpression": f"'{ANNOTATION_REQUESTED_BY} records who created this "
                "object and cannot be written by ' + request.userInfo.username",
                "reason": "Forbidden",
            },
            {
                "expression": "variables.onBehalfOf == variables.oldOnBehalfOf || "
                + _can(VERB_ATTRIBUTE, "request.resource.resource"),
                "messageExpression": f"'{ANNOTATION_ON_BEHALF_OF} is set only by the nico-flow "
                "API and operator; ' + request.userInfo.username + ' lacks the RBAC verb "
                f"{VERB_ATTRIBUTE} on ' + request.resource.resource + '.{GROUP}'",
                "reason": "Forbidden",
            },
        ],
    }
    return body


def requested_by_policy() -> Json:
    """Stamp the creating user on TaskSpecs and TaskSchedules; keep it on updates."""
    body = _meta(REQUESTED_BY_POLICY, "MutatingAdmissionPolicy")
    old = _annotation("oldObject", ANNOTATION_REQUESTED_BY)
    body["spec"] = {
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "matchConstraints": _rules(["taskspecs", "taskschedules"], ["CREATE", "UPDATE"]),
        "matchConditions": [
            {
                # objects from before the policy keep having no author
                "name": "created-or-stamped",
                "expression": f"request.operation == 'CREATE' || ({old}) != ''",
            }
        ],
        "variables": [
            {
                "name": "requester",
                "expression": "request.operation == 'CREATE' ? request.userInfo.username : "
                f"({old})",
            }
        ],
        "mutations": [
            {
                # A JSON patch, not an apply configuration: that one converts the
                # object to its schema's types first, so a malformed spec came
                # back as this policy's 403 instead of the schema's 422 saying
                # what is wrong with it.
                "patchType": "JSONPatch",
                "jsonPatch": {
                    "expression": "has(object.metadata.annotations) ? [JSONPatch{op: 'add', "
                    "path: '/metadata/annotations/' + "
                    f"jsonpatch.escapeKey('{ANNOTATION_REQUESTED_BY}'), "
                    "value: variables.requester}] : [JSONPatch{op: 'add', "
                    f"path: '/metadata/annotations', value: {{'{ANNOTATION_REQUESTED_BY}': "
                    "variables.requester}}]"
                },
            }
        ],
    }
    return body


def _binding(policy: Json) -> Json:
    kind = policy["kind"] + "Binding"
    body = _meta(policy["metadata"]["name"], kind)
    spec: Json = {"policyName": policy["metadata"]["name"]}
    if policy["kind"] == "ValidatingAdmissionPolicy":
        spec["validationActions"] = ["Deny"]
    body["spec"] = spec
    return body


def policies() -> list[Json]:
    """Every policy followed by its binding."""
    out: list[Json] = []
    for policy in (tasks_policy(), requester_policy(), requested_by_policy()):
        out += [policy, _binding(policy)]
    return out


def as_list() -> Json:
    return {"apiVersion": "v1", "kind": "List", "items": policies()}


REQUESTER_MAX = 512


def requester(metadata: dict[str, Any]) -> str | None:
    """Who asked for an object, from its audit annotations: the identity vouched
    for (on-behalf-of) and through whom, or the Kubernetes user who created it.
    None when neither is there (the policies are not installed)."""
    annotations = metadata.get("annotations") or {}
    by = str(annotations.get(ANNOTATION_REQUESTED_BY) or "")
    on_behalf_of = str(annotations.get(ANNOTATION_ON_BEHALF_OF) or "")
    who = by
    if on_behalf_of:
        who = f"{on_behalf_of} (via {by})" if by else on_behalf_of
    return who[:REQUESTER_MAX] or None


def vouch(annotations: dict[str, str], who: str | None) -> dict[str, str]:
    """Annotations of an object made for `who` by a holder of `attribute`: any
    audit annotation copied from elsewhere (a template) is dropped first."""
    annotations.pop(ANNOTATION_REQUESTED_BY, None)
    annotations.pop(ANNOTATION_ON_BEHALF_OF, None)
    if who:
        annotations[ANNOTATION_ON_BEHALF_OF] = who[:REQUESTER_MAX]
    return annotations
