"""The Celery application. Tasks live in `workers.tasks`; the work in `app/`."""

from __future__ import annotations

from celery import Celery, signals

from app.core.settings import get_settings
from workers.config import celery_config

app = Celery("cometjobs")
app.conf.update(celery_config(get_settings()))
app.conf.include = ["workers.tasks"]


@signals.setup_logging.connect
def _setup_logging(**_kwargs: object) -> None:
    from app.core.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.effective_log_format, settings.log_level)


@signals.worker_process_init.connect
def _after_fork(**_kwargs: object) -> None:
    # Pooled connections must never be shared across a fork.
    from app.core.db import reset_engine
    from app.providers.http import reset_clients

    reset_engine()
    reset_clients()


@signals.worker_process_shutdown.connect
def _before_exit(**_kwargs: object) -> None:
    from app.core import aio

    aio.shutdown()
