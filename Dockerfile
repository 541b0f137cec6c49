# Build a static binary; FerretDB's SQLite backend is pure Go, so no cgo.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/keyspend_exporter . \
    && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keyspend_exporter /usr/local/bin/keyspend_exporter
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV KEYSPEND_DATA_DIR=/data
EXPOSE 9177
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/keyspend_exporter"]
