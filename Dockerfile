# wxlogin in a container: docker build -t wxlogin . && docker run -p 8080:8080 -v wxlogin:/data wxlogin
# With no WXLOGIN_APPID it runs the sandbox; settings are WXLOGIN_* environment variables
# (README.md). The commit for `wxlogin --version`: --build-arg BUILD_COMMIT=$(git rev-parse --short=12 HEAD)

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
ARG BUILD_COMMIT=unknown
RUN BUILD_COMMIT="$BUILD_COMMIT" cargo build --release --locked --bin wxlogin \
    && mkdir /data

# glibc and CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wxlogin /usr/local/bin/wxlogin
COPY --from=build --chown=nonroot:nonroot /data /data
ENV WXLOGIN_BIND=0.0.0.0:8080 \
    WXLOGIN_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
USER nonroot
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s \
    CMD ["/usr/local/bin/wxlogin", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/wxlogin"]
