"""aiohttp adapter: pages, static webclient, health, security headers."""
