# The minimal image (SPEC §10): storage, kv and sql on SQLite, nothing loaded at run time.
# Secrets and email join it once they exist; Dockerfile.all has everything.
#
#   docker build --build-arg GIT_REVISION=$(git rev-parse --short=12 HEAD) -t mikcar .
#   docker run -p 3001:3001 -e SIDECAR_TOKEN=s3cret -v mikcar-data:/data mikcar
#
# It listens on 0.0.0.0 inside the container, so it refuses to start without a token (or
# --no-auth). Embedded defaults live in the /data volume; KV_URL and the like point elsewhere.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/
RUN scripts/install-deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
ARG GIT_REVISION=unknown
RUN cmake --preset release -DMIKCAR_BUILD_TESTS=OFF -DMIKCAR_BUILD_EXAMPLES=OFF \
      -DMIKCAR_GIT_REVISION=${GIT_REVISION} \
      -DMIKCAR_WITH_QUEUE=OFF -DMIKCAR_WITH_SQL_POSTGRES=OFF -DMIKCAR_WITH_SQL_SCRIPT=OFF \
 && cmake --build build/release --target mikcar_server \
 && strip build/release/src/mikcar

FROM debian:12-slim
# What `ldd mikcar` lists for this configuration (ca-certificates: rediss://).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libspdlog1.10 libfmt9 libtomlplusplus3 libssl3 zlib1g libboost-json1.81.0 liblmdb0 \
      libhiredis0.14 libsqlite3-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data mikcar && mkdir /data && chown mikcar /data
COPY --from=build /src/build/release/src/mikcar /usr/local/bin/mikcar
USER mikcar
WORKDIR /data
ENV HOST=0.0.0.0 MIKCAR_DATA_DIR=/data
VOLUME /data
EXPOSE 3001
ENTRYPOINT ["mikcar"]
CMD ["--storage", "--kv", "--sql"]
