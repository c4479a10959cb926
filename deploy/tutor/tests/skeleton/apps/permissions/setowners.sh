#! /bin/sh
setowner $OPENEDX_USER_ID /mounts/lms

{{ patch("local-docker-compose-permissions-command") }}
