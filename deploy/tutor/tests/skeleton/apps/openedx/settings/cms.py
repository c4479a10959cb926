{{ patch("openedx-common-settings") }}
{{ patch("openedx-cms-common-settings") }}
