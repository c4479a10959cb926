class TutorError(Exception):
    """Tutor's CLI prints "Error: <message>" and exits 1 for this exception."""
