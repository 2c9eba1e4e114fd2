"""Errors a user can fix. The CLI prints them as one line; the API maps them to 4xx."""


class UserError(Exception):
    """Bad input or environment that the user can correct; the message says what and how."""
