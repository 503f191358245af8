"""What a recorded run shows, read from its Trace (never from the engine):
``sync`` the synchronization of forward and backward waves (Betti & Gori,
Eqs. 5–6; Facts C/D) from the provenance tags, ``locking`` backprop's locked
schedule against the pipelined tick schedule (SPEC §5)."""
