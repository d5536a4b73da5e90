# wafleet orchestrator: `wafleet serve` (REST API, /webhook, watchdog, backups, Telegram bot).
# It starts one worker container per session through the Docker socket.
#
# Build with scripts/build-images.sh: it fills build/wheelhouse/ on the host first, and this
# file installs ONLY from there (no package index is needed inside the build).
#   docker build --network host --build-arg BASE_IMAGE=wafleet-base:bookworm \
#       -t wafleet-orchestrator:latest .
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Marks this stage's images, so scripts/build-images.sh can prune the untagged leftovers.
LABEL org.wafleet.stage=build
COPY build/wheelhouse /wheels
# Exactly the lock's versions (requirements/orchestrator.txt, reduced to this Python by
# scripts/build-images.sh), each wheel checked against its hash; then wafleet itself.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --find-links /wheels \
        --require-hashes -r /wheels/orchestrator.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps /wheels/wafleet-*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes pip \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ARG UID=10001
RUN groupadd --system --gid "${UID}" wafleet \
    && useradd --system --uid "${UID}" --gid wafleet --home-dir /app --shell /usr/sbin/nologin wafleet \
    && mkdir -p /app/sessions /app/backups \
    && chown -R wafleet:wafleet /app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SESSIONS_DIR=/app/sessions \
    BACKUPS_DIR=/app/backups \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=3000
WORKDIR /app
USER wafleet
EXPOSE 3000
# The default command; `docker run IMAGE wafleet --help` etc. replace it.
CMD ["wafleet", "serve"]
