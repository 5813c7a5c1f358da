#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser tests (Playwright drives it by executable_path;
# `playwright install` is never run: it downloads browsers from outside the package registries).
# Installs it when missing (root or sudo), then prints its path.
set -euo pipefail
for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else echo "browser: installing Chromium needs root (apt-get install chromium)" >&2; exit 1; fi
}
log="$(mktemp)"
if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
       || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }; } \
       >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; echo "browser: could not install chromium" >&2; exit 1
fi
rm -f "$log"
echo /usr/bin/chromium
