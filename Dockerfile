# syntax=docker/dockerfile:1

# Build a static binary with the module and build caches kept between builds.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY emulator/go.mod emulator/go.sum ./emulator/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o /out/savesync ./cmd/savesync
# An empty, writable data directory for the embedded default (docker run
# with no configuration); Cloud Run uses Cloud Firestore and never writes it.
RUN mkdir -p /out/data

# Run it on a minimal image as an unprivileged user.
FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /app
COPY --from=build /out/savesync /app/savesync
COPY config/ /app/config/
COPY --from=build --chown=nonroot:nonroot /out/data /app/.data
USER nonroot:nonroot
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/app/savesync"]
