"""Socket.io adapter: typed messages in, service calls, acks out."""
