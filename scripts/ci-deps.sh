#!/usr/bin/env bash
# Installs the system packages the test suite needs (idempotent; Debian).
set -euo pipefail
need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# Kafka (rdkafka's bundled librdkafka, built with cmake; Debian's 2.0.2 cannot talk to tansu).
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(g++)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need+=(zlib1g-dev)
# The dashboard's end-to-end test (tests/dashboard_e2e.rs): real headless Chromium driven
# through chromedriver (WebDriver). Debian's packages; the browser is never downloaded.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# The cluster test across network namespaces (tests/cluster_netns.rs, scripts/cluster-netns.sh).
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
cargo clippy --version >/dev/null 2>&1 || { echo 'cargo clippy missing: install the clippy component of the toolchain'; exit 1; }
cargo fmt --version >/dev/null 2>&1 || { echo 'cargo fmt missing: install the rustfmt component of the toolchain'; exit 1; }
echo "system packages ready"
