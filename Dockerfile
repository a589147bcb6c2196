# syntax=docker/dockerfile:1
# countersign: a static, profile-guided binary on distroless/static, non-root (UID 65532).
#   docker build -t ghcr.io/countersign/countersign:0.1.0 .
#   docker build --build-arg PGO=false -t countersign:dev .   # a plain release build, faster to make
#
# PGO=true (the default) builds with bench/pgo.sh: an instrumented build, some seconds of training
# load (examples/pgo_train.rs) on the build machine's loopback, then the optimized build: a fifth
# fewer instructions per proxied request than the plain build (docs/PERFORMANCE.md).
# The binary is static: glibc linked in (-Ctarget-feature=+crt-static for an explicit --target, the
# build machine's, so that build scripts and proc-macros stay dynamic). Names resolve through
# /etc/hosts and DNS, which glibc 2.36 has built in; nothing is loaded at run time. 7 % fewer
# instructions per request than a static musl build, and the allocator the soak was measured with
# (docs/PERFORMANCE.md).

FROM rust:1.95-bookworm AS build
ARG PGO=true
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# The whole source tree (.dockerignore leaves out target/, .git/ and the deployment files): every
# target Cargo.toml names must exist, though only the binary is built.
COPY . .
ENV CARGO_PROFILE_RELEASE_STRIP=true
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "$PGO" = true ]; then \
        bench/pgo.sh --static && cp target/pgo/countersign /countersign; \
    else \
        host=$(rustc -vV | sed -n 's/^host: //p') \
        && RUSTFLAGS="-Ctarget-feature=+crt-static" cargo build --release --locked --bin countersign \
            --target "$host" \
        && cp "target/$host/release/countersign" /countersign; \
    fi

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="countersign" \
      org.opencontainers.image.description="A sidecar that terminates mTLS and verifies HTTP message signatures, IP ranges and bearer tokens in front of a backend" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/countersign/countersign"
COPY --from=build /countersign /countersign
USER 65532:65532
EXPOSE 8443 9901
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/countersign", "health", "--admin", "127.0.0.1:9901"]
ENTRYPOINT ["/countersign"]
CMD ["run", "-c", "/etc/countersign/config/countersign.yaml"]
