#!/usr/bin/env bash
# Lays out the image's only layer: the static coldstart binary, a CA bundle (rustls reads the
# platform's roots: S3, GCS, Azure and the API server over TLS), a passwd/group naming the
# non-root user 65532, and /tmp. Both deploy/image/build.sh and the Containerfile use this, so
# the daemonless image and a `docker build` one hold the same files.
#
#   rootfs.sh BINARY CA_BUNDLE DEST
set -euo pipefail
binary="${1:?usage: rootfs.sh BINARY CA_BUNDLE DEST}"
ca="${2:?usage: rootfs.sh BINARY CA_BUNDLE DEST}"
dest="${3:?usage: rootfs.sh BINARY CA_BUNDLE DEST}"

# A dynamically linked binary would start on the build machine and fail in the image, where
# there is no loader: refuse it here rather than in a cluster.
if LC_ALL=C readelf -lW "$binary" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  echo "rootfs.sh: $binary is dynamically linked; the image needs a static (musl) build" >&2
  exit 1
fi

rm -rf "$dest"
install -d -m 0755 "$dest/usr/local/bin" "$dest/etc/ssl/certs"
install -d -m 1777 "$dest/tmp"
install -m 0755 "$binary" "$dest/usr/local/bin/coldstart"
install -m 0644 "$ca" "$dest/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dest/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$dest/etc/group"
chmod 0644 "$dest/etc/passwd" "$dest/etc/group"
