#!/usr/bin/env bash
# Installs the system programs the tests and the demo run for real, when a fresh machine lacks
# them: git (with git-http-backend), openssl (test PKI), the distribution OCI registry and
# htpasswd (registry auth), and for real image builds: runc (BuildKit's OCI worker), umoci and
# skopeo (base images made and pushed locally) and busybox-static (their rootfs), and for the real
# kubelet node (test/cluster/node.ts): containerd, the standard CNI plugins, iptables and conntrack
# (kube-proxy), and Prometheus (analysis against a real one). Go builds the Kubernetes binaries,
# BuildKit and crane (test/cluster/build-binaries.sh).
set -euo pipefail

missing=()
command -v git >/dev/null || missing+=(git)
[[ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ]] || missing+=(git)
command -v openssl >/dev/null || missing+=(openssl)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v runc >/dev/null || missing+=(runc)
command -v umoci >/dev/null || missing+=(umoci)
command -v skopeo >/dev/null || missing+=(skopeo)
# The controller image's Debian base (scripts/image.ts) when no base image is given.
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
# The package, not just any busybox: base images copy its static binary into a rootfs.
[[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null) == "install ok installed" ]] ||
  missing+=(busybox-static)
# The real node: containerd (CRI), bridge/host-local/loopback/portmap CNI plugins, and what
# kube-proxy's iptables mode runs.
command -v containerd >/dev/null || missing+=(containerd)
for plugin in bridge host-local loopback portmap; do
  [[ -x /usr/lib/cni/$plugin ]] || { missing+=(containernetworking-plugins); break; }
done
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
# ignoreDifferences' jqPathExpressions run jq itself (src/core/kube/jq-paths.ts), as the image does.
command -v jq >/dev/null || missing+=(jq)
# Analysis against a real Prometheus (test/cluster/prometheus.ts).
command -v prometheus >/dev/null || missing+=(prometheus)

if (( ${#missing[@]} )); then
  echo "[install-system-deps] installing: ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  # docker-registry's and containerd's maintainer scripts would start system services; tests start
  # their own (with their own sockets and state), so stop and disable those where systemd runs.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  for service in docker-registry containerd prometheus; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
      $sudo systemctl stop "$service" || true
      $sudo systemctl disable "$service" >/dev/null 2>&1 || true
    fi
  done
fi

if ! command -v go >/dev/null; then
  echo "[install-system-deps] Go is required to build the test control plane (go 1.26+)" >&2
  exit 1
fi
