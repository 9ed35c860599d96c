# Multi-stage build of the fabric's binaries; the final image holds only
# the static binaries (FROM scratch). Build: docker build -t haipfabric .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/edge ./cmd/edge \
 && go build -trimpath -ldflags="-s -w" -o /out/toolworker ./cmd/toolworker \
 && go build -trimpath -ldflags="-s -w" -o /out/nats-server github.com/nats-io/nats-server/v2 \
 && mkdir -p /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/ /
COPY nats.conf /nats.conf
# Single-box default: the edge with its embedded nats-server on /data.
ENV HOST=0.0.0.0 PORT=8080 DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/edge"]
