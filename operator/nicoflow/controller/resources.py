"""Our custom resources, labels and Task names; defined in nicoflow.kube.resources
(shared with the API server) and re-exported here for the controller modules."""

from nicoflow.kube.resources import (
    ANNOTATION_RESUMED_AT,
    ANNOTATION_SCHEDULED_TIME,
    FINALIZER,
    GROUP,
    LABEL_LEAK_RESPONSE,
    LABEL_OPERATION,
    LABEL_RACK,
    LABEL_SCHEDULE,
    LABEL_TASKSPEC,
    RACKS,
    RULES,
    SCHEDULES,
    TASKS,
    TASKSPECS,
    VERSION,
    task_name,
)

__all__ = [
    "ANNOTATION_RESUMED_AT",
    "ANNOTATION_SCHEDULED_TIME",
    "FINALIZER",
    "GROUP",
    "LABEL_LEAK_RESPONSE",
    "LABEL_OPERATION",
    "LABEL_RACK",
    "LABEL_SCHEDULE",
    "LABEL_TASKSPEC",
    "RACKS",
    "RULES",
    "SCHEDULES",
    "TASKS",
    "TASKSPECS",
    "VERSION",
    "task_name",
]
