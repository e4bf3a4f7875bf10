"""Pure rules of Telecircle: state + command -> new state + events.

Nothing in this package performs I/O, reads a clock or imports asyncio; time is passed in.
"""
