"""Paper-specific experiments above the builder (``training``, ``activation_relaxation``,
``pc``): they compute arrays; kinds save and draw them."""
