#!/usr/bin/env bash
# Installs what building oneid needs and a fresh Debian/Ubuntu machine lacks:
# libclang (RocksDB's bindgen), a C++ compiler and make (jemalloc's build).
# protoc is vendored by the build (protoc-bin-vendored), so no
# protobuf-compiler is needed.
set -euo pipefail

need=()
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
if [ "${ONEID_WITH_CHAOS:-0}" = 1 ]; then
  command -v iptables >/dev/null 2>&1 || need+=(iptables)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "bootstrap: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
