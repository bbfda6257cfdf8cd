"""Shared mode: people, sign-in, devices, authorizations (connections), wallet top-ups."""
