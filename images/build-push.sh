#!/usr/bin/env bash
# Builds the four template images and the connect relay's, pushes them to the registry
# stack's ECR repositories (infra/registry.yaml; outputs <Kind>RepositoryUri), and prints
# the main stack's image parameters on stdout — everything else goes to stderr:
#
#   images=$(images/build-push.sh REGISTRY_STACK [TAG])
#   sam deploy … --parameter-overrides $images …
#   # → TemplateImageJupyter=<uri>:<tag> TemplateImageRstudio=… TemplateImageVscode=…
#   #   TemplateImageXpra=… RelayImage=…
#
# TAG: default the commit (`git describe --always --dirty`); the repositories' tags are
# immutable, so a tag is pushed once and a new build needs a new tag. REGION: AWS_REGION,
# else the CLI's. PLATFORMS: comma-separated (default linux/amd64; linux/amd64,linux/arm64
# for Graviton compute environments). IMAGES: which to build (default all five).
#
# Needs Docker with buildx, the AWS CLI with credentials for the registry's account, and
# what images/build-binaries.sh needs (Rust, cargo-lambda and ziglang): the agent and the
# relay are built once per architecture here and copied into the images (docs/images.md).
# The first deploy runs it before `sam deploy` (docs/deploy.md), so no step waits for a
# later one. A failed image does not stop the others; the script fails at the end,
# naming each, and then prints nothing on stdout.
set -euo pipefail
stack="${1:?usage: images/build-push.sh REGISTRY_STACK [TAG]}"
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${2:-$(git -C "$root" describe --always --dirty --abbrev=12)}"
region="${AWS_REGION:-$(aws configure get region)}"
platforms="${PLATFORMS:-linux/amd64}"
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
"$root/images/build-binaries.sh" "${arches[@]}" >&2

registry="$(output JupyterRepositoryUri | cut -d/ -f1)"
if [ -z "$registry" ] || [ "$registry" = None ]; then
  echo "stack $stack has no JupyterRepositoryUri output: deploy infra/registry.yaml first" >&2
  exit 2
fi
aws ecr get-login-password --region "$region" |
  docker login --username AWS --password-stdin "$registry" >&2
failed=()
parameters=()
for kind in ${IMAGES:-relay jupyter rstudio vscode xpra}; do
  name="$(tr '[:lower:]' '[:upper:]' <<<"${kind:0:1}")${kind:1}"
  repo="$(output "${name}RepositoryUri")"
  if [ -z "$repo" ] || [ "$repo" = None ]; then
    echo "the registry stack has no output ${name}RepositoryUri: skipping $kind" >&2
    failed+=("$kind (no ${name}RepositoryUri)")
    continue
  fi
  echo "building $kind ($platforms) → $repo:$tag" >&2
  if docker buildx build --platform "$platforms" -f "$root/images/$kind/Dockerfile" \
    -t "$repo:$tag" --push "$root" >&2; then
    if [ "$kind" = relay ]; then
      parameters+=("RelayImage=$repo:$tag")
    else
      parameters+=("TemplateImage$name=$repo:$tag")
    fi
  else
    failed+=("$kind")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "not pushed: ${failed[*]}" >&2
  exit 1
fi
echo "${parameters[*]}"
