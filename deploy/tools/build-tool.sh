#!/usr/bin/env bash
# Builds a pinned Go tool from its module (the Go module proxy; no prebuilt binaries) once,
# caches it outside the repository and prints its path.
#
#   deploy/tools/build-tool.sh crane   ->  ~/.cache/coldstart/tools/crane-v0.22.1/crane
#   deploy/tools/build-tool.sh helm    ->  ~/.cache/coldstart/tools/helm-v4.3.2/helm
#
# COLDSTART_TOOLS overrides the cache directory. Both modules need Go >= 1.26; GOTOOLCHAIN
# (e.g. go1.27.3) fetches a newer Go from the module proxy if the local one is older.
set -euo pipefail

name="${1:?usage: build-tool.sh crane|helm}"
case "$name" in
  crane) module=github.com/google/go-containerregistry/cmd/crane version=v0.22.1 ;;
  helm) module=helm.sh/helm/v4/cmd/helm version=v4.3.2 ;;
  *) echo "build-tool.sh: unknown tool $name" >&2; exit 2 ;;
esac

cache="${COLDSTART_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/coldstart/tools}"
dir="$cache/$name-$version"
if [[ -x "$dir/$name" ]]; then
  echo "$dir/$name"
  exit 0
fi
command -v go >/dev/null 2>&1 || { echo "build-tool.sh: Go is needed to build $name" >&2; exit 1; }
mkdir -p "$dir"
tmp="$(mktemp -d "$cache/.$name.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "== building $name $version from $module (once; cached in $dir)" >&2
start=$SECONDS
# CGO off: a static tool that runs anywhere; -trimpath: the same binary on every machine.
# helm stamps its version through ldflags, as its Makefile does.
ldflags="-s -w"
if [[ "$name" == helm ]]; then
  ldflags+=" -X helm.sh/helm/v4/internal/version.version=$version"
fi
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath -ldflags "$ldflags" "$module@$version" >&2
mv "$tmp/$name" "$dir/$name"
echo "== built $name in $((SECONDS - start))s" >&2
echo "$dir/$name"
