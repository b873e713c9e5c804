# A local stand-in for rocker/rstudio (infra/images.sh builds it where no registry is
# reachable): R from Debian (r-base-core) with what images/rstudio/Dockerfile relies on
# from rocker's image — R_HOME and an Renviron.site there, /etc/rstudio/rserver.conf
# naming R (rocker's install_rstudio.sh), DEFAULT_USER. Not provided: RStudio Server
# itself, which is distributed only from Posit's download site (docs/images.md says what
# is therefore not verified here).
ARG BASE=studios-base:bookworm
FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV R_HOME=/usr/lib/R \
    DEFAULT_USER=rstudio \
    LANG=C.UTF-8
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates r-base-core \
 && rm -rf /var/lib/apt/lists/* \
 && touch "${R_HOME}/etc/Renviron.site" \
 && mkdir -p /etc/rstudio \
 && echo "rsession-which-r=$(command -v R)" >/etc/rstudio/rserver.conf
