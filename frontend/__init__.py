"""Dozen frontend."""
