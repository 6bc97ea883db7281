"""The pages: views, the live relay and its websocket consumer, health and metrics."""
