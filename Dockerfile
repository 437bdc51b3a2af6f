# encore: one image for the web process and the workers (docs/deploy.md).
#   docker build -t encore .
#   docker compose -f deploy/compose.yaml up
# Not built here: this machine has a docker client but no docker daemon (see docs/deploy.md).
FROM python:3.11-slim-bookworm

# libsndfile: soundfile's decoder; ffmpeg: mp3/ogg decoding fallbacks; postgresql-client:
# pg_dump/pg_restore for `encore backup` / `encore restore` against PostgreSQL.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsndfile1 ffmpeg postgresql-client \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 encore
WORKDIR /app

# torch first, the CPU build (a GPU image would install a CUDA build here instead).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps 'tinysoundfont==0.3.7'

USER encore
ENV ENCORE_DATA_DIR=/var/lib/encore \
    ENCORE_HOST=0.0.0.0 \
    ENCORE_PORT=8000 \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/encore"]
EXPOSE 8000

# /healthz answers as long as the process does; /readyz also checks PostgreSQL, Redis, S3
# and the model files (use it for the load balancer, not for restarts).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8000/healthz', timeout=4)" || exit 1

ENTRYPOINT ["encore"]
CMD ["serve", "--no-workers"]
