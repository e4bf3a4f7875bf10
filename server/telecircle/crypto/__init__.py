"""Cryptographic adapters: signed tokens, secrets and their hashes, envelope encryption."""
