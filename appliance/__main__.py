"""`python -m appliance` runs the command line (same as the frozen `outpost`)."""

import sys

from appliance.cli import main

if __name__ == "__main__":
    sys.exit(main())
