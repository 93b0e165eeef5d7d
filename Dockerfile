# Mosaic as a service: `docker compose up mosaic` (see docker-compose.yml and the README).
# Build stage: the same Debian packages scripts/setup.sh installs to build whisper.cpp and
# link FFmpeg.
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      clang libclang-dev cmake pkg-config \
      libavformat-dev libavcodec-dev libavutil-dev libswresample-dev libswscale-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/mosaic /usr/local/bin/mosaic

# Run stage: FFmpeg's libraries and OpenBLAS (loaded at run time when present).
FROM debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libavformat59 libavcodec59 libavutil57 libswresample4 libswscale6 \
      libopenblas0-pthread ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/mosaic /usr/local/bin/mosaic
COPY pipelines /etc/mosaic/pipelines
ENV MOSAIC_DATA_DIR=/data \
    MOSAIC_PIPELINES=/etc/mosaic/pipelines \
    MOSAIC__MODELS__DIR=/models \
    MOSAIC__SERVER__BIND=0.0.0.0 \
    MOSAIC__SERVER__PORT=8400 \
    MOSAIC__SERVER__INGEST_ROOT=/library
VOLUME ["/data", "/models"]
EXPOSE 8400
# Without API keys the server listens on loopback only (unreachable from outside the
# container): set MOSAIC__SERVER__WRITE_KEYS (and READ_KEYS) to serve.
ENTRYPOINT ["mosaic"]
CMD ["serve"]
