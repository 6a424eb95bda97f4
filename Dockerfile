# syntax=docker/dockerfile:1
# Pregonero's image: the release build CI runs (`cargo build --release --locked`, SQLX_OFFLINE),
# dependencies compiled in a layer of their own, a small non-root runtime.
#
#   docker build -t pregonero .                       # the server
#   docker build --target snapshots -t pregonero:snapshots .   # + Chromium, for trading chart snapshots
#
# Run: docker run -p 8080:8080 -v pregonero-data:/data pregonero   (SQLite, keys and media in /data)

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never CARGO_INCREMENTAL=0
# 1. Dependencies: only the manifests and the lock file, with empty sources, so this layer is
#    rebuilt when a dependency changes and not when our code does.
# (rust-toolchain.toml is left out: the base image is that toolchain, without rustfmt/clippy.)
COPY Cargo.toml Cargo.lock ./
COPY migrations/Cargo.toml migrations/
COPY fakes/Cargo.toml fakes/
RUN mkdir -p src migrations/src fakes/src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs migrations/src/lib.rs fakes/src/lib.rs \
 && for b in telegram_pacing event_validation contacts_csv; do echo 'fn main() {}' > benches/$b.rs; done \
 && cargo build --release --locked -p pregonero --bin pregonero \
 && rm -rf src migrations/src fakes/src benches
# 2. Our code.
COPY migrations migrations
COPY fakes fakes
COPY benches benches
COPY src src
COPY frontend frontend
COPY docs/openapi.json docs/openapi.json
RUN touch src/main.rs src/lib.rs migrations/src/lib.rs \
 && cargo build --release --locked -p pregonero --bin pregonero \
 && install -m 0755 target/release/pregonero /pregonero

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin pregonero \
 && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /pregonero /usr/local/bin/pregonero
USER 10001:10001
WORKDIR /data
# Listen on every interface inside the container; data (SQLite, keys, media) under /data.
ENV PREGONERO_HOST=0.0.0.0 PREGONERO_PORT=8080 PREGONERO_DATA_DIR=/data PREGONERO_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/data"]
# The binary handles SIGTERM itself (unready, drain, exit), also as PID 1.
ENTRYPOINT ["/usr/local/bin/pregonero"]
CMD ["serve"]

# With Debian's Chromium, for the trading service's chart snapshots (signals.snapshots).
FROM runtime AS snapshots
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
ENV PREGONERO_SIGNALS__SNAPSHOTS__CHROMIUM_PATH=/usr/bin/chromium

# The default target is the server without Chromium.
FROM runtime
