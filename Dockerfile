# One image for every Replyline service; compose picks the module to run.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY replyline ./replyline
COPY workflows ./workflows
COPY profiles ./profiles
RUN pip install . && useradd --system --uid 10001 replyline
USER replyline
# Overridden per service in compose.yaml.
CMD ["python", "-m", "services.ingest"]
