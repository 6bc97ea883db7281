#!/usr/bin/env bash
# Refresh the vendored front-end files in static/vendor/ from the npm registry and
# record name, version, licence and source in static/vendor/VERSIONS.md.
# Usage: scripts/vendor.sh [uplot-version]   (default: the version pinned below)
# Needs npm (only to download the package tarball; nothing is installed).
set -euo pipefail
cd "$(dirname "$0")/.."

UPLOT_VERSION=${1:-1.6.32}
DEST=static/vendor/uplot
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "uplot@${UPLOT_VERSION}" >/dev/null && tar xzf "uplot-${UPLOT_VERSION}.tgz")
licence=$(node -p "require('$work/package/package.json').license")
mkdir -p "$DEST"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$DEST/"
cp "$work/package/LICENSE" "$DEST/LICENSE"

cat > static/vendor/VERSIONS.md <<MD
# Vendored front-end files

Refreshed by \`scripts/vendor.sh\` from the npm registry; served from \`/static/vendor/\`
(no CDN: every page works offline).

| Package | Version | Licence | Files | Source |
|---|---|---|---|---|
| uPlot (charts on the metrics page) | ${UPLOT_VERSION} | ${licence} | \`uplot/uPlot.iife.min.js\`, \`uplot/uPlot.min.css\`, \`uplot/LICENSE\` | https://registry.npmjs.org/uplot/-/uplot-${UPLOT_VERSION}.tgz (https://github.com/leeoniya/uPlot) |

htmx and its websocket extension are not vendored here: django-htmx ships them
(\`{% htmx_script %}\`).
MD
echo "uPlot ${UPLOT_VERSION} (${licence}) -> ${DEST}"
