#!/usr/bin/env bash
# Make sure a Chromium the browser tests can drive is installed: Debian's package, installed
# with apt when missing (as root), else a clear message and a failure (never a skip).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing Debian's chromium package for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null
  }
  exit 0
fi
echo "chromium is missing: install it (Debian/Ubuntu: sudo apt-get install chromium)" >&2
echo "the browser tests (tests/integration/test_web_page.py) need it" >&2
exit 1
