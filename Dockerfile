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
RUN pip install --no-cache-dir . && useradd --uid 10001 pitstop
USER 10001
ENV PITSTOP_RUNBOOKS_DIR=/app/runbooks
ENTRYPOINT ["pitstop"]
CMD ["worker"]
