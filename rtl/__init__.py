"""Dozen rtl."""
