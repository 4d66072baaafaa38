"""`python -m urbanclip ...` entry point."""

import sys

from urbanclip.cli import main

if __name__ == "__main__":
    sys.exit(main())
