"""The LMS signer: asymmetric JWTs of the LMS are signed by keyd (entry point lms.djangoapp keyd_signer)."""
