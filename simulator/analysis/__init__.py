"""What a recorded run shows, read from its Trace: ``sync`` the waves' synchronization
(Betti & Gori, Eqs. 5–6), ``locking`` backprop's locked schedule against the ticks'."""
