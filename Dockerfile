# The inferscope image the Kubernetes manifests (deploy/kubernetes) refer to: the release
# binary only, on a distroless base, as a non-root user.
#   docker build --build-arg INFERSCOPE_COMMIT=$(git rev-parse --short=12 HEAD) \
#     -t registry.example/inferscope:0.1.0 .
# Not built in CI here: the build machines reach no container registry for the base images.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# `inferscope --version` names it (.git is not copied in).
ARG INFERSCOPE_COMMIT=unknown
ENV INFERSCOPE_COMMIT=$INFERSCOPE_COMMIT
COPY . .
RUN cargo build --release --locked -p inferscope \
 && cp target/release/inferscope /inferscope

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /inferscope /usr/local/bin/inferscope
USER 65532:65532
# The proxy, the admin endpoints (/metrics, /healthz, /readyz), the OTLP ingest (gRPC, HTTP).
EXPOSE 9000 9464 4327 4328
ENTRYPOINT ["/usr/local/bin/inferscope"]
CMD ["serve", "--listen", "0.0.0.0:9000", "--admin", "0.0.0.0:9464"]
