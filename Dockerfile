# syntax=docker/dockerfile:1
# Build stage: compile a release binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --bin pkgmirror

# Run stage: a small image with a non-root user and the data dir as a volume.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/pkgmirror --create-home pkgmirror
COPY --from=build /src/target/release/pkgmirror /usr/local/bin/pkgmirror
USER pkgmirror
WORKDIR /var/lib/pkgmirror
ENV PKGMIRROR__SERVER__LISTEN=0.0.0.0:5000 \
    PKGMIRROR__STORAGE__DATA_DIR=/var/lib/pkgmirror/data
VOLUME ["/var/lib/pkgmirror/data"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:5000/health || exit 1
# Set PKGMIRROR__PYPI__INDEX_URL (or PROXPI_INDEX_URL) to the upstream index at `docker run`.
ENTRYPOINT ["pkgmirror"]
CMD ["serve"]
