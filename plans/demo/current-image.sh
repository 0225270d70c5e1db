#!/bin/sh
# Prints the image the app container runs, for the rollback.
# shellcheck disable=SC2086
: "${DOCKER_CMD:=docker}"  # runner sets it; `docker` when run by hand
$DOCKER_CMD inspect --format '{{.Config.Image}}' "$1"
