"""Dozen compiler."""
