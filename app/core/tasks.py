"""The messaging contract: every task name and the queue each is routed to.

Callers enqueue by `TaskName`, the worker registers its tasks under the same
names, and both the worker and the API's publisher route with `ROUTES`, so a
name can never be spelt two ways.
"""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    SUBMIT_JOB = "cometjobs.submit_job"
    COLLECT_JOB = "cometjobs.collect_job"
    LATE_CHECK = "cometjobs.late_check"
    DELIVER_WEBHOOK = "cometjobs.deliver_webhook"
    POLL_DUE = "cometjobs.poll_due"
    DELIVER_DUE = "cometjobs.deliver_due"
    SWEEP = "cometjobs.sweep"
    EXPIRE_ARTIFACTS = "cometjobs.maintenance.expire_artifacts"


class QueueName(StrEnum):
    SUBMIT = "submit"
    POLL = "poll"
    COLLECT = "collect"
    WEBHOOKS = "webhooks"
    MAINTENANCE = "maintenance"


ROUTES: dict[TaskName, QueueName] = {
    TaskName.SUBMIT_JOB: QueueName.SUBMIT,
    TaskName.POLL_DUE: QueueName.POLL,
    TaskName.LATE_CHECK: QueueName.POLL,
    TaskName.COLLECT_JOB: QueueName.COLLECT,
    TaskName.DELIVER_WEBHOOK: QueueName.WEBHOOKS,
    TaskName.DELIVER_DUE: QueueName.WEBHOOKS,
    TaskName.SWEEP: QueueName.MAINTENANCE,
    TaskName.EXPIRE_ARTIFACTS: QueueName.MAINTENANCE,
}

__all__ = ["ROUTES", "QueueName", "TaskName"]
