"""The entry of the tickprop command (console script, ``python -m simulator``, the
checkout's ``python cli.py``): it sets the start-up Ctrl-C handler before the command
(numpy, matplotlib, the simulator) is imported."""
import os
import signal
import threading


def _interrupted_while_starting(signum, frame):
    """Ctrl-C while tickprop starts (the imports take a good part of a second):
    nothing is written yet, so the one line and exit 130 at once, no traceback."""
    os.write(2, b"interrupted\n")
    os._exit(130)


# Until the command is loaded, Ctrl-C is _interrupted_while_starting (where
# Ctrl-C has its usual meaning: not in a worker thread, nor where the parent
# process made it ignored); after it, a KeyboardInterrupt again, which every
# command turns into `interrupted` after cleaning up.
_STARTING = (threading.current_thread() is threading.main_thread()
             and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
if _STARTING:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

from .command import main  # noqa: E402  (what Ctrl-C may interrupt while tickprop starts)

if _STARTING:
    signal.signal(signal.SIGINT, signal.default_int_handler)

__all__ = ["main"]

if __name__ == "__main__":
    main(prog_name="tickprop")
