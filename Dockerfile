# walrus, built from this repository. Used by docker-compose.yml; also a starting point for
# production images.
#
#   docker build -t walrus .
#   docker run --rm -v $PWD/walrus.toml:/etc/walrus/walrus.toml walrus
FROM rust:1-bookworm AS build
# librdkafka (bundled, built by rdkafka-sys) needs a C toolchain, make, pkg-config and
# OpenSSL's headers; everything else comes from crates.io.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin walrus \
    && cp target/release/walrus /usr/local/bin/walrus

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home walrus
COPY --from=build /usr/local/bin/walrus /usr/local/bin/walrus
USER walrus
ENV WALRUS_CONFIG=/etc/walrus/walrus.toml
# The admin server (/healthz, /readyz, /metrics, /status) when [admin] listen allows it.
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/walrus"]
CMD ["run"]
