#!/usr/bin/env bash
# Builds the real programs the tests and the demo run, from pinned Go modules
# (test/cluster/modules/<name>/go.mod), and caches them so only the first run pays:
#   kubernetes  kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#   etcd        etcd
#   kwok        kwok (+ kwok-stages.yaml, its stock "fast" node and pod stages)
#   helm        helm
#   kustomize   kustomize
#   actionlint  actionlint (make lint checks the workflows with it)
#   buildkit    buildkitd, buildctl (image builds on runc; test/cluster/buildkit.ts)
#   crane       crane (an independent registry client for the image tests)
#   act         act (nektos/act: runs the ready-to-copy workflows in the e2e pipeline test)
#
#   test/cluster/build-binaries.sh [name...]   build what is missing; print one directory holding
#                                              (symlinks to) all the binaries
#
# Each module is cached on its own under ${KUBE_ACTIONS_CACHE:-~/.cache/kube-actions}/build/,
# keyed by its go.mod, go.sum, the Go version and its build recipe below, so bumping one tool
# rebuilds only that tool. Build logs go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
modules="$here/modules"
cache_root=${KUBE_ACTIONS_CACHE:-$HOME/.cache/kube-actions}

# Never let `go` fetch a different toolchain: the machines reach the module proxy, not go.dev.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

log() { printf '[build-binaries] %s\n' "$*" >&2; }

module_version() { # <module name> <module path> -> the version its go.mod requires
  awk -v m="$2" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' \
    "$modules/$1/go.mod"
}

gobuild() { # <module name> <ldflags> <output> <package...>
  local name=$1 ldflags=$2 output=$3
  shift 3
  (cd "$modules/$name" && go build -trimpath -ldflags "-s -w $ldflags" -o "$output" "$@") >&2
}

build_kubernetes() {
  local out=$1 version minor flags=""
  version=$(module_version kubernetes k8s.io/kubernetes)
  minor=${version#v1.}; minor=${minor%%.*}
  # Kubernetes reports its version through these variables (hack/lib/version.sh); without them
  # the binaries say v0.0.0-master and version-aware clients misjudge them.
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  # One build for the five commands, so their shared packages compile once. kubelet and kube-proxy
  # run the real node (test/cluster/node.ts); CGO_ENABLED=0 as in Kubernetes' own static builds.
  gobuild kubernetes "$flags" "$out/" k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

build_etcd() {
  # server/v3's root package is etcd's main package.
  gobuild etcd "" "$1/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  local out=$1 version dir
  version=$(module_version kwok sigs.k8s.io/kwok)
  gobuild kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=${version#v}" "$out/kwok" sigs.k8s.io/kwok/cmd/kwok
  # kwok refuses to start without Stage definitions: ship the release's own "fast" stages (nodes
  # become Ready and heartbeat through leases; pods become Running/Ready at once, Job pods
  # complete, deleted pods go away).
  dir=$(cd "$modules/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
               pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo '---'
    cat "$dir/kustomize/stage/$stage.yaml"
  done > "$out/kwok-stages.yaml"
}

build_helm() {
  local version
  version=$(module_version helm helm.sh/helm/v4)
  gobuild helm "-X helm.sh/helm/v4/internal/version.version=$version -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    "$1/helm" helm.sh/helm/v4/cmd/helm
}

build_kustomize() {
  local version
  version=$(module_version kustomize sigs.k8s.io/kustomize/kustomize/v5)
  gobuild kustomize "-X sigs.k8s.io/kustomize/api/provenance.version=$version" \
    "$1/kustomize" sigs.k8s.io/kustomize/kustomize/v5
}

build_actionlint() {
  local version
  version=$(module_version actionlint github.com/rhysd/actionlint)
  gobuild actionlint "-X github.com/rhysd/actionlint.version=$version" "$1/actionlint" github.com/rhysd/actionlint/cmd/actionlint
}

build_buildkit() {
  local version pkg=github.com/moby/buildkit
  version=$(module_version buildkit $pkg)
  # BuildKit's own release tags minus `seccomp`, which needs cgo and libseccomp: without it RUN
  # steps get no seccomp filter, which the tests do not rely on.
  (cd "$modules/buildkit" && go build -trimpath -tags "osusergo netgo static_build" \
    -ldflags "-s -w -X $pkg/version.Version=$version -X $pkg/version.Revision=$version -X $pkg/version.Package=$pkg" \
    -o "$1/" $pkg/cmd/buildkitd $pkg/cmd/buildctl) >&2
}

build_crane() {
  local version
  version=$(module_version crane github.com/google/go-containerregistry)
  gobuild crane "-X github.com/google/go-containerregistry/cmd/crane/cmd.Version=$version" \
    "$1/crane" github.com/google/go-containerregistry/cmd/crane
}

build_act() {
  local version
  version=$(module_version act github.com/nektos/act)
  gobuild act "-X main.version=$version" "$1/act" github.com/nektos/act
}

all=(kubernetes etcd kwok helm kustomize actionlint buildkit crane act)
wanted=("${@:-${all[@]}}")
go_version=$(go version)
# `go version` names the host platform; a cross build (GOOS/GOARCH set) is keyed by its target too.
target=$(go env GOOS GOARCH | paste -sd/)
[[ $target == "$(go env GOHOSTOS GOHOSTARCH | paste -sd/)" ]] || go_version+=" target $target"
links=()
for name in "${wanted[@]}"; do
  declare -F "build_$name" >/dev/null || { log "unknown module: $name"; exit 2; }
  key=$( { echo "$go_version"; cat "$modules/$name/go.mod" "$modules/$name/go.sum"; declare -f gobuild "build_$name"; } \
         | sha256sum | cut -c1-16)
  dir="$cache_root/build/$name-$key"
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
combined="$cache_root/bin/$(printf '%s\n' "${links[@]}" | sha256sum | cut -c1-16)"
if [[ ! -d "$combined" ]]; then
  mkdir -p "$combined.tmp.$$"
  for dir in "${links[@]}"; do
    for f in "$dir"/*; do ln -sf "$f" "$combined.tmp.$$/"; done
  done
  mv -T "$combined.tmp.$$" "$combined" 2>/dev/null || rm -rf "$combined.tmp.$$"
fi
echo "$combined"
