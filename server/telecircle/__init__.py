"""Telecircle: self-hosted group therapy over video."""
