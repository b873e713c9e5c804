# A local stand-in for codercom/code-server:<version>-bookworm (infra/images.sh builds it
# where no registry is reachable): the same code-server release, from npm
# (install-code-server.sh says how), with what images/vscode/Dockerfile relies on from
# that base — `code-server` on PATH, the coder user (uid 1000), the base's last USER coder.
ARG BASE=studios-base:bookworm
FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# code-server 4.117.0 is built for Node.js 22 (its .node-version: 22.22.1, with npm 10.9).
ARG CODE_SERVER_VERSION=4.117.0
ARG NODE_VERSION=22.22.1
ARG NPM_VERSION=10.9.4
COPY images/local-bases/install-code-server.sh /usr/local/lib/studio/install-code-server.sh
RUN /usr/local/lib/studio/install-code-server.sh "${CODE_SERVER_VERSION}" "${NODE_VERSION}" "${NPM_VERSION}" \
 && useradd --no-log-init --create-home --shell /bin/bash --uid 1000 coder
USER 1000
ENV USER=coder
WORKDIR /home/coder
