#!/usr/bin/env bash
# Builds Kubernetes' own control plane from the Go module proxy, once per version, into a
# cache outside the repo, and prints the directory holding the binaries:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
# A second run with the same versions finds every binary and builds nothing.
#
#   COLDSTART_KUBE_CACHE  cache root (default ~/.cache/coldstart/kube)
#
# Binaries are built one at a time with GOFLAGS=-p=2: the machine is shared, and a
# kube-apiserver link alone takes a few GiB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kube_version=$(cat "$here/VERSION")
kwok_version=$(sed -n 's/^require sigs.k8s.io\/kwok \(v[^ ]*\).*/\1/p; s/^\tsigs.k8s.io\/kwok \(v[^ ]*\).*/\1/p' "$here/kwok/go.mod" | head -n1)
cache_root=${COLDSTART_KUBE_CACHE:-$HOME/.cache/coldstart/kube}
bin="$cache_root/$kube_version-kwok-$kwok_version/bin"
mkdir -p "$bin"
times="$bin/../build-times.txt"

export GOFLAGS="${GOFLAGS:--p=2} -trimpath -buildvcs=false"
export CGO_ENABLED=0

# Version stamps as Kubernetes' hack/lib/version.sh sets them, so `kubectl version` and
# /version report the release (and the apiserver's emulation version follows it).
minor=${kube_version#v1.}; minor=${minor%%.*}
commit=$(go mod download -json "k8s.io/kubernetes@$kube_version" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Origin", {}).get("Hash", ""))' || true)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  [[ -n $commit ]] && kube_ldflags+=" -X $pkg.gitCommit=$commit"
done

build() { # name module-dir package ldflags
  local name=$1 dir=$2 pkg=$3 ldflags=$4
  if [[ -x "$bin/$name" ]]; then return; fi
  echo "== building $name ($pkg) into $bin" >&2
  local start=$SECONDS
  if ! (cd "$dir" && go build -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg") >&2; then
    echo "tests/kube/build.sh: FAILED: (cd $dir && go build -o $bin/$name $pkg)" >&2
    rm -f "$bin/.$name.tmp"
    exit 1
  fi
  mv "$bin/.$name.tmp" "$bin/$name"
  echo "$name $((SECONDS - start))s cold build ($(date -u +%FT%TZ), $(nproc) cores)" >> "$times"
  echo "== $name built in $((SECONDS - start))s" >&2
}

build etcd "$here" go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager "$here" k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build kube-scheduler "$here" k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
build kwok "$here/kwok" sigs.k8s.io/kwok/cmd/kwok \
  "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}"

# kwok acts only through Stages and ships none in its binary: take the ones kwokctl runs by
# default (nodes Ready at once, heartbeats with leases, pods Running) from the module source.
stages="$bin/kwok-stages.yaml"
if [[ ! -s $stages ]]; then
  kwok_src=$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$kwok_src/kustomize/stage/$f"
  done > "$stages.tmp"
  mv "$stages.tmp" "$stages"
fi
echo "$bin"
