FROM python:3.11-slim
# Build and install the wheel. The package's default schemas and policies are links to the
# top-level folders, so those are copied before the wheel is built.
WORKDIR /build
# The dependencies exactly as locked (versions and hashes), then the package itself without
# resolving anything again.
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip install --no-cache-dir --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY policies ./policies
COPY src ./src
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && rm -rf /build
# The installed package carries the default schemas and policies; mount others at
# /app/schemas and /app/policies, or point INCIDENTS_SCHEMAS_DIR / INCIDENTS_POLICIES_DIR at them.
WORKDIR /app
ENV INCIDENTS_HOST=0.0.0.0 \
    INCIDENTS_PORT=8080
USER nobody
EXPOSE 8080
CMD ["incidents", "serve"]
