"""``python -m plantwatch``: the same command line as the ``plantwatch`` script."""

from plantwatch.cli import main

if __name__ == "__main__":
    main()
