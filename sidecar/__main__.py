"""``python -m sidecar``."""

from sidecar.cli.app import main

if __name__ == "__main__":
    main()
