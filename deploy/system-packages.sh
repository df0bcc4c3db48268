#!/usr/bin/env bash
# The Debian packages the test suite drives for real, installed by `make install` when missing:
#   prometheus (2.42: prometheus, promtool), prometheus-alertmanager (0.25: alertmanager), shellcheck, and
#   chromium with fonts-liberation (the web view's browser tests drive /usr/bin/chromium through Playwright;
#   browser downloads are not available, so Playwright never fetches its own).
# The product itself needs none of them at run time. Needs root (or sudo) and the Debian mirror.
set -euo pipefail
missing=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v shellcheck >/dev/null || missing+=(shellcheck)
test -x /usr/bin/chromium || missing+=(chromium)
dpkg -s fonts-liberation >/dev/null 2>&1 || missing+=(fonts-liberation)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "installing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "WARNING: not root and no sudo: install ${missing[*]} yourself (the Prometheus tests need them)" >&2
        exit 0
    fi
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends: no Prometheus exporters or web consoles pulled in; the services the packages
# would start are not wanted either (the tests start their own on 127.0.0.1).
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for service in prometheus prometheus-alertmanager; do
    $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
done
