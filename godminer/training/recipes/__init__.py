"""One file per training method, each read top to bottom."""
