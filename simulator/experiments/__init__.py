"""Paper-specific experiment code above the builder: ``training`` the online
training loop of the ``train`` kind (every rule from the same weights on the
same frames), ``activation_relaxation`` the runs of paper 001's Figs. 1–3, and
``pc`` paper 002's graphs of elementary operations (what a Model cannot hold:
the weight-shared unrolled RNN, free-operand random DAGs) with its Tables 1–2.
Experiments compute and return arrays; kinds save and draw them."""
