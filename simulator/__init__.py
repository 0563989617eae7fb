"""Dozen simulator."""
