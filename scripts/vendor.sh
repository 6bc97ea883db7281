#!/usr/bin/env bash
# Refresh the vendored front-end files in static/vendor/ from the npm registry and
# record name, version, licence and source in static/vendor/VERSIONS.md.
# Usage: scripts/vendor.sh [uplot-version [axe-core-version [idiomorph-version [swagger-ui-version]]]]
#        (default: pinned below)
# Needs npm (only to download the package tarball; nothing is installed).
set -euo pipefail
cd "$(dirname "$0")/.."

UPLOT_VERSION=${1:-1.6.32}
AXE_VERSION=${2:-4.14.1}
IDIOMORPH_VERSION=${3:-0.8.0}
SWAGGER_VERSION=${4:-5.35.0}
DEST=static/vendor/uplot
AXE_DEST=static/vendor/axe
MORPH_DEST=static/vendor/idiomorph
SWAGGER_DEST=static/vendor/swagger-ui
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "uplot@${UPLOT_VERSION}" >/dev/null && tar xzf "uplot-${UPLOT_VERSION}.tgz")
licence=$(node -p "require('$work/package/package.json').license")
mkdir -p "$DEST"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$DEST/"
cp "$work/package/LICENSE" "$DEST/LICENSE"

# axe-core: the accessibility checker the browser tests inject (no page loads it).
mkdir -p "$work/axe"
(cd "$work/axe" && npm pack --silent "axe-core@${AXE_VERSION}" >/dev/null && tar xzf "axe-core-${AXE_VERSION}.tgz")
axe_licence=$(node -p "require('$work/axe/package/package.json').license")
mkdir -p "$AXE_DEST"
cp "$work/axe/package/axe.min.js" "$work/axe/package/LICENSE" "$work/axe/package/LICENSE-3RD-PARTY.txt" "$AXE_DEST/"

# idiomorph: the morph swap (hx-swap-oob="morph") of live pushes; its htmx extension
# is in the same file.
mkdir -p "$work/idiomorph"
(cd "$work/idiomorph" && npm pack --silent "idiomorph@${IDIOMORPH_VERSION}" >/dev/null && tar xzf "idiomorph-${IDIOMORPH_VERSION}.tgz")
morph_licence=$(node -p "require('$work/idiomorph/package/package.json').license")
mkdir -p "$MORPH_DEST"
cp "$work/idiomorph/package/dist/idiomorph-ext.min.js" "$work/idiomorph/package/LICENSE" "$MORPH_DEST/"

# swagger-ui-dist: the API docs page (/api/docs/, static/js/api-docs.js starts it).
mkdir -p "$work/swagger"
(cd "$work/swagger" && npm pack --silent "swagger-ui-dist@${SWAGGER_VERSION}" >/dev/null && tar xzf "swagger-ui-dist-${SWAGGER_VERSION}.tgz")
swagger_licence=$(node -p "require('$work/swagger/package/package.json').license")
mkdir -p "$SWAGGER_DEST"
cp "$work/swagger/package/swagger-ui-bundle.js" "$work/swagger/package/swagger-ui.css" "$SWAGGER_DEST/"
cp "$work/swagger/package/LICENSE" "$SWAGGER_DEST/LICENSE"
[ -f "$work/swagger/package/NOTICE" ] && cp "$work/swagger/package/NOTICE" "$SWAGGER_DEST/NOTICE"

cat > static/vendor/VERSIONS.md <<MD
# Vendored front-end files

Refreshed by \`scripts/vendor.sh\` from the npm registry; served from \`/static/vendor/\`
(no CDN: every page works offline).

| Package | Version | Licence | Files | Source |
|---|---|---|---|---|
| uPlot (charts on the metrics page) | ${UPLOT_VERSION} | ${licence} | \`uplot/uPlot.iife.min.js\`, \`uplot/uPlot.min.css\`, \`uplot/LICENSE\` | https://registry.npmjs.org/uplot/-/uplot-${UPLOT_VERSION}.tgz (https://github.com/leeoniya/uPlot) |
| axe-core (accessibility checks in \`tests/browser/test_accessibility.py\` only; no page loads it) | ${AXE_VERSION} | ${axe_licence} | \`axe/axe.min.js\`, \`axe/LICENSE\`, \`axe/LICENSE-3RD-PARTY.txt\` | https://registry.npmjs.org/axe-core/-/axe-core-${AXE_VERSION}.tgz (https://github.com/dequelabs/axe-core) |
| idiomorph with its htmx extension (the \`morph\` swap of live pushes, every page) | ${IDIOMORPH_VERSION} | ${morph_licence} | \`idiomorph/idiomorph-ext.min.js\`, \`idiomorph/LICENSE\` | https://registry.npmjs.org/idiomorph/-/idiomorph-${IDIOMORPH_VERSION}.tgz (https://github.com/bigskysoftware/idiomorph) |
| Swagger UI (the API docs page, \`/api/docs/\`) | ${SWAGGER_VERSION} | ${swagger_licence} | \`swagger-ui/swagger-ui-bundle.js\`, \`swagger-ui/swagger-ui.css\`, \`swagger-ui/LICENSE\`, \`swagger-ui/NOTICE\` | https://registry.npmjs.org/swagger-ui-dist/-/swagger-ui-dist-${SWAGGER_VERSION}.tgz (https://github.com/swagger-api/swagger-ui) |

axe-core is MPL-2.0, a file-level copyleft: it is vendored unmodified, with its licence
next to it; a change to \`axe.min.js\` itself would have to be published under MPL-2.0.

htmx and its websocket extension are not vendored here: django-htmx ships them
(\`{% htmx_script %}\`).
MD
echo "uPlot ${UPLOT_VERSION} (${licence}) -> ${DEST}"
echo "axe-core ${AXE_VERSION} (${axe_licence}) -> ${AXE_DEST}"
echo "idiomorph ${IDIOMORPH_VERSION} (${morph_licence}) -> ${MORPH_DEST}"
echo "swagger-ui-dist ${SWAGGER_VERSION} (${swagger_licence}) -> ${SWAGGER_DEST}"
