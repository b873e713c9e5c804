# A local stand-in for quay.io/jupyter/minimal-notebook (infra/images.sh builds it where
# no registry is reachable): what images/jupyter/Dockerfile relies on from that base —
# `jupyter` on PATH under /opt/conda, the jovyan user (uid 1000, gid 100) and NB_UID/NB_GID,
# the base's last USER being jovyan. Not provided: mamba (conda-forge is not reachable
# here: the local run's conda stand-in gets its Python packages below instead).
ARG BASE=studios-base:bookworm
FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG JUPYTERLAB_VERSION=4.6.6
ENV NB_USER=jovyan \
    NB_UID=1000 \
    NB_GID=100 \
    CONDA_DIR=/opt/conda \
    HOME=/home/jovyan \
    PATH=/opt/conda/bin:$PATH
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python3 python3-venv curl \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv "${CONDA_DIR}" \
 && "${CONDA_DIR}/bin/pip" install --no-cache-dir "jupyterlab==${JUPYTERLAB_VERSION}" \
 && useradd --no-log-init --create-home --shell /bin/bash --uid "${NB_UID}" --gid "${NB_GID}" "${NB_USER}" \
 && chown -R "${NB_UID}:${NB_GID}" "${CONDA_DIR}"
# The local run's stand-ins for micromamba and mount-s3 (infra/conda-create.py and
# infra/mount-stand-in.py, which the local run mounts in) run on this Python, as root by
# the agent: conda-forge and S3 over FUSE are out of reach here. Not in the upstream
# base, and not used on AWS.
ARG PY_RATTLER_VERSION=0.28.0
ARG BOTO3_VERSION=1.43.108
RUN "${CONDA_DIR}/bin/pip" install --no-cache-dir "py-rattler==${PY_RATTLER_VERSION}" "boto3==${BOTO3_VERSION}"
USER 1000
WORKDIR ${HOME}
