#!/usr/bin/env bash
# Builds the four template images (and the connect relay's, if the stack runs one) and
# pushes them to the stack's ECR repositories (outputs TemplateRepository*), tagged
# latest and with the commit:
#
#   images/build-push.sh STACK_NAME [REGION]
#
# PLATFORMS: the images' platforms, comma-separated (default linux/amd64; e.g.
# linux/amd64,linux/arm64 for Graviton compute environments). IMAGES: which to build
# (default: jupyter rstudio vscode xpra, and relay when the stack has RelayRepository).
#
# Needs Docker with buildx, the AWS CLI with credentials for the stack's account, and
# what images/build-binaries.sh needs (Rust, cargo-lambda and ziglang): the agent and the
# relay are built once per architecture here and copied into the images (docs/images.md).
# Run it after the first `sam deploy`, and after every agent change. A failed image does
# not stop the others; the script fails at the end, naming each.
set -euo pipefail
stack="${1:?usage: images/build-push.sh STACK_NAME [REGION]}"
region="${2:-${AWS_REGION:-$(aws configure get region)}}"
platforms="${PLATFORMS:-linux/amd64}"
root="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$root" rev-parse --short HEAD)"
output() {
  aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
arches=()
IFS=, read -ra wanted <<<"$platforms"
for platform in "${wanted[@]}"; do
  case "$platform" in
    linux/amd64) arches+=(amd64) ;;
    linux/arm64) arches+=(arm64) ;;
    *) echo "unsupported platform '$platform' (linux/amd64, linux/arm64)" >&2; exit 2 ;;
  esac
done
"$root/images/build-binaries.sh" "${arches[@]}"

registry="$(output TemplateRepositoryJupyter | cut -d/ -f1)"
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
kinds="${IMAGES:-jupyter rstudio vscode xpra}"
if [ -z "${IMAGES:-}" ]; then
  relay_repo="$(output TemplateRepositoryRelay)"
  [ -n "$relay_repo" ] && [ "$relay_repo" != None ] && kinds="relay $kinds"
fi
failed=()
for kind in $kinds; do
  key="TemplateRepository$(tr '[:lower:]' '[:upper:]' <<<"${kind:0:1}")${kind:1}"
  repo="$(output "$key")"
  if [ -z "$repo" ] || [ "$repo" = None ]; then
    echo "the stack has no output $key: skipping $kind" >&2
    failed+=("$kind (no $key)")
    continue
  fi
  echo "building $kind ($platforms) → $repo" >&2
  if ! docker buildx build --platform "$platforms" -f "$root/images/$kind/Dockerfile" \
    -t "$repo:latest" -t "$repo:$commit" --push "$root"; then
    failed+=("$kind")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "not pushed: ${failed[*]}" >&2
  exit 1
fi
