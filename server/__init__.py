"""Composition root: settings, authentication, the Starlette app and the command line."""
