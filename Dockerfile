FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
COPY schemas ./schemas
COPY policies ./policies
ENV INCIDENTS_HOST=0.0.0.0 \
    INCIDENTS_PORT=8080 \
    INCIDENTS_SCHEMAS_DIR=/app/schemas \
    INCIDENTS_POLICIES_DIR=/app/policies
USER nobody
EXPOSE 8080
CMD ["incidents", "serve"]
