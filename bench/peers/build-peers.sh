#!/usr/bin/env bash
# Builds the real peers the bench measures against (issue 14) from pinned Go modules
# (bench/peers/<name>/go.mod, wrapper modules whose `tool` line names the peer's main package),
# and caches them like test/cluster/build-binaries.sh does, so only the first run pays:
#   source-controller        source-controller        + source-controller-crds/*.yaml
#   kustomize-controller     kustomize-controller     + kustomize-controller-crds/*.yaml
#   notification-controller  notification-controller  + notification-controller-crds/*.yaml
#   argo-rollouts            rollouts-controller      + argo-rollouts-crds/*.yaml
# The CRDs come from the same module versions, out of the module cache (Flux: config/crd/bases/,
# Argo Rollouts: manifests/crds/).
#
#   bench/peers/build-peers.sh [name...]   build what is missing; print one directory holding
#                                          (symlinks to) the binaries and the CRD directories
#
# Each peer is cached on its own under ${KUBE_ACTIONS_CACHE:-~/.cache/kube-actions}/build/, keyed by
# its go.mod, go.sum, the Go version and its build recipe below. Build logs go to stderr. The go
# command runs under `nice -n 19` (the peers are big builds on a 2-core machine); set
# PEERS_GO_P=1 to also build one package at a time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${KUBE_ACTIONS_CACHE:-$HOME/.cache/kube-actions}

# As build-binaries.sh: the machines reach the module proxy, not go.dev, so `go` may not fetch a
# toolchain on its own; a peer that needs a newer Go than the machine's names it below, and the
# only one to name is go1.27.3, which the go command takes from the module proxy.
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
newer_go=go1.27.3

log() { printf '[build-peers] %s\n' "$*" >&2; }

toolchain() { # <name> -> the GOTOOLCHAIN it builds with
  case $1 in
    argo-rollouts) echo "$newer_go" ;; # v1.10.2's go.mod says go 1.26.10
    *) echo local ;;
  esac
}

gocmd() { # <name> <go args...>: the go command in the wrapper module, niced
  local name=$1
  shift
  (cd "$here/$name" && GOTOOLCHAIN=$(toolchain "$name") nice -n 19 go "$@")
}

module_version() { # <name> <module path> -> the version the wrapper builds
  gocmd "$1" list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$2"
}

module_dir() { # <name> <module path> -> its directory in the module cache (downloaded if needed)
  gocmd "$1" mod download "$2"
  gocmd "$1" list -m -f '{{if .Replace}}{{.Replace.Dir}}{{else}}{{.Dir}}{{end}}' "$2"
}

gobuild() { # <name> <ldflags> <output> <package>
  local name=$1 ldflags=$2 output=$3 pkg=$4
  gocmd "$name" build ${PEERS_GO_P:+-p "$PEERS_GO_P"} -trimpath -ldflags "-s -w $ldflags" -o "$output" "$pkg" >&2
}

copy_crds() { # <name> <module path> <dir inside the module> <output dir>
  local dir
  dir=$(module_dir "$1" "$2")
  mkdir -p "$4"
  cp "$dir/$3"/*.yaml "$4/"
  rm -f "$4/kustomization.yaml" # Argo Rollouts' manifests/crds/ holds one; it is no CRD
  chmod u+w "$4"/*.yaml # the module cache is read-only
}

# Flux's controllers take no version ldflags (their Dockerfiles build with none).
build_flux() { # <name> <out>
  local mod=github.com/fluxcd/$1
  gobuild "$1" "" "$2/$1" "$mod"
  copy_crds "$1" "$mod" config/crd/bases "$2/$1-crds"
}
build_source-controller() { build_flux source-controller "$1"; }
build_kustomize-controller() { build_flux kustomize-controller "$1"; }
build_notification-controller() { build_flux notification-controller "$1"; }

build_argo-rollouts() {
  local mod=github.com/argoproj/argo-rollouts version vpkg
  version=$(module_version argo-rollouts $mod)
  vpkg=$mod/utils/version
  # As its Makefile does; a tagged, clean build reports the tag itself (utils/version.GetVersion).
  gobuild argo-rollouts "-X $vpkg.version=${version#v} -X $vpkg.gitTag=$version -X $vpkg.gitCommit=$version -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z" \
    "$1/rollouts-controller" $mod/cmd/rollouts-controller
  copy_crds argo-rollouts $mod manifests/crds "$1/argo-rollouts-crds"
}

all=(source-controller kustomize-controller notification-controller argo-rollouts)
wanted=("${@:-${all[@]}}")
target=$(go env GOOS GOARCH | paste -sd/)
links=()
for name in "${wanted[@]}"; do
  declare -F "build_$name" >/dev/null || { log "unknown peer: $name"; exit 2; }
  go_version=$(GOTOOLCHAIN=$(toolchain "$name") go version)
  # `go version` names the host platform; a cross build (GOOS/GOARCH set) is keyed by its target too.
  [[ $target == "$(go env GOHOSTOS GOHOSTARCH | paste -sd/)" ]] || go_version+=" target $target"
  key=$( { echo "$go_version"; cat "$here/$name/go.mod" "$here/$name/go.sum";
           declare -f toolchain gocmd module_version module_dir gobuild copy_crds build_flux "build_$name"; } \
         | sha256sum | cut -c1-16)
  dir="$cache_root/build/peer-$name-$key"
  if [[ ! -f "$dir/.complete" ]]; then
    log "building $name (cold; cached afterwards in $dir)"
    start=$(date +%s)
    rm -rf "$dir" && mkdir -p "$dir"
    "build_$name" "$dir"
    touch "$dir/.complete"
    log "built $name in $(( $(date +%s) - start ))s"
  fi
  links+=("$dir")
done

# One directory of symlinks for callers, named by the keys it combines.
combined="$cache_root/bin/peers-$(printf '%s\n' "${links[@]}" | sha256sum | cut -c1-16)"
if [[ ! -d "$combined" ]]; then
  mkdir -p "$combined.tmp.$$"
  for dir in "${links[@]}"; do
    for f in "$dir"/*; do ln -sfn "$f" "$combined.tmp.$$/"; done
  done
  mv -T "$combined.tmp.$$" "$combined" 2>/dev/null || rm -rf "$combined.tmp.$$"
fi
echo "$combined"
