"""Every table, imported in one place for Alembic and for tests."""

from app.artifacts.models import Artifact, Upload
from app.clients.models import Client, ClientSpend
from app.core.db import Base
from app.jobs.models import DispatchState, Job, JobPoll, TimelineEvent, UpstreamLimit
from app.webhooks.models import WebhookAttempt, WebhookDelivery

__all__ = [
    "Artifact", "Base", "Client", "ClientSpend", "DispatchState", "Job", "JobPoll", "TimelineEvent", "Upload",
    "UpstreamLimit",
    "WebhookAttempt", "WebhookDelivery",
]
