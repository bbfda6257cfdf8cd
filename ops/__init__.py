"""Operator tools run against a deployed stack (make verify-deploy)."""
