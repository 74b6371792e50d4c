#!/usr/bin/env bash
# Browser tests need Debian's Chromium (Playwright's own browser download does not work offline).
# Installs it when missing and we may (root with apt-get); otherwise the browser tests skip and say why.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing chromium for the browser tests (apt-get) ..."
  (apt-get install -y -qq chromium >/dev/null 2>&1) || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
else
  echo "note: /usr/bin/chromium is missing and cannot be installed here; browser tests will be skipped" >&2
fi
