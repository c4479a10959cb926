"""Test stand-in for Tutor v21.0.8 (Ulmo), written for tutor-contrib-keyd's tests, not copied from
Tutor. It holds only what a v1 plugin touches: tutor.hooks (Filters, Actions, Contexts, priorities,
with the API shape of tutor/core/hooks), tutor.exceptions.TutorError and tutor.__about__."""
