"""`python cli.py ...` in a checkout: the tickprop command (simulator/command.py),
entered through simulator.__main__ so Ctrl-C while it starts is one line."""
from simulator.__main__ import main

if __name__ == "__main__":
    main(prog_name="tickprop")
