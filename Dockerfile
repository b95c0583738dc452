# The IFD flow image: python -m bytewax.run flows.ifd (see docker-compose.yml for the cluster).
#   docker build -t ifd-flow:local .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# only what `pip install .` needs (pyproject packages: connectors, flows, models, sinks, samples)
COPY pyproject.toml README.md ./
COPY connectors ./connectors
COPY flows ./flows
COPY models ./models
COPY sinks ./sinks
COPY samples ./samples
COPY tools ./tools
RUN pip install .

# unprivileged user; /data (sample, alerts.jsonl, reports) and /recovery are volumes in compose
RUN useradd --create-home --uid 10001 ifd \
    && mkdir -p /data /recovery /input \
    && chown ifd:ifd /data /recovery
USER ifd

ENV IFD_DATA_DIR=/data
# bytewax cluster port (-a host:2101)
EXPOSE 2101
CMD ["python", "-m", "bytewax.run", "flows.ifd"]
