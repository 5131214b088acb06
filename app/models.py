"""Every table, imported in one place for Alembic and for tests."""

from app.artifacts.models import Artifact, Upload
from app.clients.models import Client
from app.core.db import Base
from app.jobs.models import Job, TimelineEvent
from app.webhooks.models import WebhookAttempt, WebhookDelivery

__all__ = ["Artifact", "Base", "Client", "Job", "TimelineEvent", "Upload", "WebhookAttempt", "WebhookDelivery"]
