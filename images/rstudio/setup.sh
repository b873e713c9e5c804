#!/usr/bin/env bash
# The static part of what rocker's /init (s6) does, for images whose entrypoint is the
# studio agent (images/rstudio/Dockerfile):
# - the user R sessions run as (rocker's default_user.sh: `rstudio`, group staff), which
#   a rocker base already has and another base gets here;
# - /workspace owned by that user, so R can write the workspace;
# - ${R_HOME}/etc/Renviron.site present: the agent writes the session's environment
#   there at start (rocker's init_set_env.sh does that from s6's container environment),
#   because rsession does not inherit rserver's environment.
# RStudio Server's own settings: logging.conf (stderr) and rsession.conf beside this file;
# the per-session ones (port, base path, auth-none) are the agent's command line.
set -euo pipefail
user="$1"
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
  if getent group staff >/dev/null; then usermod -a -G staff "$user"; fi
fi
mkdir -p /workspace
chown "$user:$(id -gn "$user")" /workspace
r_home="${R_HOME:-$(R RHOME)}"
touch "$r_home/etc/Renviron.site"
mkdir -p /etc/rstudio
touch /etc/rstudio/rserver.conf
