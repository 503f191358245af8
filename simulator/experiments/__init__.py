"""Paper-specific experiments above the builder: ``training`` (the train kind's
online loop), ``activation_relaxation`` (paper 001), ``pc`` (paper 002's graphs of
elementary operations). They compute arrays; kinds save and draw them."""
