#!/usr/bin/env bash
# Builds the four template images (and the connect relay's) and pushes them to the stack's ECR repositories
# (outputs TemplateRepository*), tagged latest and with the commit:
#
#   images/build-push.sh STACK_NAME [REGION]
#
# Needs Docker (with buildx for linux/amd64) and the AWS CLI with credentials for the
# stack's account. Run it after the first `sam deploy`, and after every agent change.
set -euo pipefail
stack="${1:?usage: images/build-push.sh STACK_NAME [REGION]}"
region="${2:-${AWS_REGION:-$(aws configure get region)}}"
root="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$root" rev-parse --short HEAD)"
output() {
  aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
registry="$(output TemplateRepositoryJupyter | cut -d/ -f1)"
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
# The four templates, and the connect relay if the stack runs one (RelayDomain set).
kinds="jupyter rstudio vscode xpra"
[ -n "$(output TemplateRepositoryRelay)" ] && [ "$(output TemplateRepositoryRelay)" != None ] && kinds="$kinds relay"
for kind in $kinds; do
  key="TemplateRepository$(tr '[:lower:]' '[:upper:]' <<<"${kind:0:1}")${kind:1}"
  repo="$(output "$key")"
  echo "building $kind → $repo" >&2
  docker buildx build --platform linux/amd64 -f "$root/images/$kind/Dockerfile" \
    -t "$repo:latest" -t "$repo:$commit" --push "$root"
done
