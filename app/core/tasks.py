"""The messaging contract: every task name and the queue each is routed to. These are
job work only; periodic work runs in the scheduler (`workers/scheduler.py`), not as tasks.

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


class QueueName(StrEnum):
    SUBMIT = "submit"
    POLL = "poll"
    COLLECT = "collect"
    WEBHOOKS = "webhooks"
    MAINTENANCE = "maintenance"


ROUTES: dict[TaskName, QueueName] = {
    TaskName.SUBMIT_JOB: QueueName.SUBMIT,
    TaskName.LATE_CHECK: QueueName.POLL,
    TaskName.COLLECT_JOB: QueueName.COLLECT,
    TaskName.DELIVER_WEBHOOK: QueueName.WEBHOOKS,
}

__all__ = ["ROUTES", "QueueName", "TaskName"]
