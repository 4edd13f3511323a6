#!/usr/bin/env bash
# Builds the coldstart container image without a container engine: a static (musl) release
# binary, one layer laid out by rootfs.sh, packed with crane (built from its Go module by
# deploy/tools/build-tool.sh) into an image tarball that `docker load`, `podman load` and
# `crane push` accept. The Containerfile beside this builds the same image with an engine.
#
#   deploy/image/build.sh                # -> target/image/coldstart-image.tar
#
# Environment:
#   COLDSTART_BINARY  use this static binary instead of building one (e.g. a CI artifact)
#   COLDSTART_IMAGE   the image reference to tag (default: the one deploy/ and the chart use)
#   IMAGE_OUT         output tarball (default: target/image/coldstart-image.tar)
#   SOURCE_DATE_EPOCH file times in the layer (default: the commit time): same binary, same digest
#
# Prints the reference and the digest; writes them beside the tarball (.ref, .digest).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

target=x86_64-unknown-linux-musl
version="$(cargo pkgid -p coldstart | sed -E 's/.*[#@]//')"
repository=ghcr.io/coldstart-dev/coldstart
ref="${COLDSTART_IMAGE:-$repository:$version}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "$revision" != unknown ]] && ! git diff --quiet HEAD -- 2>/dev/null; then
  revision+="-dirty"
fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
out="${IMAGE_OUT:-$root/target/image/coldstart-image.tar}"
work="$root/target/image/work"
mkdir -p "$(dirname "$out")" "$work"

# 1. The static binary.
binary="${COLDSTART_BINARY:-}"
if [[ -z "$binary" ]]; then
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "== adding the Rust $target target (rustup)"
    rustup target add "$target"
  fi
  # ring, zstd and mimalloc compile C: musl-gcc (Debian: musl-tools) builds it for musl.
  if ! command -v musl-gcc >/dev/null 2>&1; then
    echo "== musl-gcc not found: installing Debian's musl-tools"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools; } ||
      { echo "build.sh: musl-gcc is needed (apt-get install musl-tools)" >&2; exit 1; }
  fi
  echo "== cargo build --release --target $target (several minutes on 2 cores when cold)"
  start=$SECONDS
  # No debug info and stripped symbols: the image ships the binary only (the release
  # profile keeps debug info for profiling on a developer's machine).
  CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build -p coldstart --release --locked --target "$target"
  echo "== release binary built in $((SECONDS - start))s"
  binary="${CARGO_TARGET_DIR:-$root/target}/$target/release/coldstart"
fi

# 2. The layer: fixed owners and times, sorted entries, so the digest depends on content only.
ca=/etc/ssl/certs/ca-certificates.crt
[[ -r "$ca" ]] || { echo "build.sh: $ca not found (Debian: ca-certificates)" >&2; exit 1; }
bash deploy/image/rootfs.sh "$binary" "$ca" "$work/rootfs"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$work/rootfs" -cf "$work/layer.tar" .

# 3. The image: crane appends the layer to an empty OCI image and sets its config. crane
# mutate reads from a registry, so crane's own in-memory registry serves on loopback for
# the duration of the build.
crane="$(bash deploy/tools/build-tool.sh crane)"
"$crane" registry serve --address 127.0.0.1:0 2>"$work/registry.log" &
registry=$!
trap 'kill "$registry" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 100); do
  port="$(sed -nE 's/.*serving on port ([0-9]+).*/\1/p' "$work/registry.log")"
  [[ -n "$port" ]] && break
  kill -0 "$registry" 2>/dev/null || { cat "$work/registry.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$port" ]] || { echo "build.sh: crane registry did not start" >&2; exit 1; }
staging="127.0.0.1:$port/coldstart:build"

# crane logs every blob it pushes: kept in crane.log, shown only if it fails.
quiet() { "$@" >>"$work/crane.log" 2>&1 || { cat "$work/crane.log" >&2; return 1; }; }
: >"$work/crane.log"
quiet "$crane" append --oci-empty-base --new_layer "$work/layer.tar" --new_tag "$staging"
quiet "$crane" mutate "$staging" \
  --set-platform linux/amd64 \
  --entrypoint /usr/local/bin/coldstart \
  --user 65532:65532 \
  --workdir / \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --exposed-ports 8080/tcp \
  --label org.opencontainers.image.title=coldstart \
  --label "org.opencontainers.image.description=Disaster-recovery controller that makes a whole Kubernetes cluster safe to stop and start again" \
  --label org.opencontainers.image.source=https://github.com/coldstart-dev/coldstart \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  --tag "$ref" --output "$out"

digest="$("$crane" digest --tarball "$out")"
echo "$ref" >"$out.ref"
echo "$digest" >"$out.digest"
echo "== image $ref ($digest) -> ${out#"$root"/}"
