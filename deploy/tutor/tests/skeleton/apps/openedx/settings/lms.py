# The order of Tutor's LMS settings (lms/production.py includes partials/common_lms.py, which
# includes partials/common_all.py): Tutor's JWT_AUTH values, then the common patch, then the LMS one.
{{ patch("openedx-common-settings") }}
{{ patch("openedx-lms-common-settings") }}
