# pitstop worker / webhook image (used by docker-compose.yml; not needed for the embedded default).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pitstop ./pitstop
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY sandbox ./sandbox
COPY chaos ./chaos
COPY runbooks ./runbooks
RUN pip install --no-cache-dir . && useradd --uid 10001 pitstop \
    && mkdir -p /var/lib/pitstop && chown 10001 /var/lib/pitstop
USER 10001
ENV PITSTOP_RUNBOOKS_DIR=/app/runbooks
# state: the webhook's intake journal (alerts durable before the 200), tokens
ENV PITSTOP_STATE_DIR=/var/lib/pitstop
ENTRYPOINT ["pitstop"]
CMD ["worker"]
