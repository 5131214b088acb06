# syntax=docker/dockerfile:1
# One image for every role; the command picks it:
#   api (default) | worker | scheduler | flower | migrate | worker-health | clients ...
# e.g. `docker run cometjobs worker --concurrency 8`. See docker-compose.yml.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies in their own layer (a code change does not reinstall them), exactly as
# locked: every version pinned and every file checked against its hash, so two builds
# install the same bytes (requirements.lock, `make lock`). pip check fails the build if
# the lock ever misses a dependency.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && pip check
COPY pyproject.toml README.md ./
COPY app ./app
COPY cometjobs ./cometjobs
COPY workers ./workers
COPY migrations ./migrations
COPY emulator ./emulator
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    COMETJOBS_ENV=prod \
    COMETJOBS_DATA_DIR=/var/lib/cometjobs
RUN groupadd --system --gid 10001 cometjobs \
    && useradd --system --uid 10001 --gid cometjobs --home-dir /var/lib/cometjobs --shell /usr/sbin/nologin cometjobs \
    && install -d -o cometjobs -g cometjobs /var/lib/cometjobs /var/lib/cometjobs/metrics
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/cometjobs
# API, worker and scheduler metrics exporters, Flower
EXPOSE 8000 9808 9809 5555
ENTRYPOINT ["cometjobs"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
