"""python -m godminer: the command line."""

from godminer.cli import main

main()
